"""Optimizer states and the temporaries of one optimizer step."""

from __future__ import annotations

from math import prod

from ..model.spec import ModelSpec
from ..model.params import linears
from ..versions import holds

# bitsandbytes 8-bit optimizers: states of tensors with >= 4096 elements are uint8, one fp32 absmax
# per 256-element block (bitsandbytes/optim/optimizer.py: min_8bit_size=4096, blockwise, BLOCKSIZE 256);
# smaller tensors keep 32-bit states.
BNB_MIN_8BIT_SIZE = 4096
BNB_BLOCK = 256
# Paged optimizers keep the states of tensors with at least 1e5 elements in CUDA managed memory
# (bitsandbytes/optim/optimizer.py get_state_buffer: F.get_paged -> cudaMallocManaged), which torch's
# allocator does not see: they count on the device (nvidia-smi) but not in max_memory_allocated.
BNB_PAGED_MIN_NUMEL = 100_000
SHAPE_OPTIMIZERS = ("adafactor", "adafactor_hf", "adamw_8bit", "paged_adamw_8bit")  # state depends on shapes


def state_bytes(optimizer: str, trainable: int, param_bytes: int, shapes: list[tuple[tuple[int, ...], int]]) -> int:
    """Persistent optimizer state for ``trainable`` parameters stored in ``param_bytes`` each;
    ``shapes`` lists (shape, how many tensors have it) for the optimizers whose state depends on it.

    torch.optim states take the parameter's dtype (torch/optim/adamw.py: zeros_like(p)).
    """
    if optimizer in ("adamw", "adamw_fused", "adamw_single"):
        return 2 * trainable * param_bytes                 # exp_avg, exp_avg_sq
    if optimizer in ("sgd_momentum", "lion"):
        return trainable * param_bytes                     # momentum_buffer / exp_avg
    if optimizer == "sgd":
        return 0
    if optimizer == "adafactor":
        # torch.optim.Adafactor (beta1=None): row and column variances for tensors of >= 2 dims,
        # a full variance for vectors (torch/optim/_adafactor.py).
        total = 0
        for shape, count in shapes:
            if len(shape) >= 2:
                total += count * prod(shape[:-2]) * (shape[-2] + shape[-1]) * param_bytes
            else:
                total += count * shape[0] * param_bytes
        return total
    if optimizer == "adafactor_hf":
        # transformers.optimization.Adafactor keeps fp32 statistics whatever the parameter's dtype
        # (optimization.py:1221-1254 @5.17: .to(grad) on grad.float()); beta1 None: no exp_avg.
        total = 0
        for shape, count in shapes:
            if len(shape) >= 2:
                total += count * prod(shape[:-2]) * (shape[-2] + shape[-1]) * 4
            else:
                total += count * shape[0] * 4
        return total
    if optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        paged = optimizer == "paged_adamw_8bit"
        total = 0
        for shape, count in shapes:
            n = prod(shape)
            if n >= BNB_MIN_8BIT_SIZE:
                total += count * ((0 if paged and n >= BNB_PAGED_MIN_NUMEL else 2 * n) + 2 * 4 * -(-n // BNB_BLOCK))
            else:
                total += count * 2 * 4 * n
        return total
    raise ValueError(optimizer)


def managed_state_bytes(optimizer: str, shapes: list[tuple[tuple[int, ...], int]]) -> int:
    """Optimizer states in CUDA managed memory, outside torch's allocator (paged optimizers)."""
    if optimizer != "paged_adamw_8bit":
        return 0
    return sum(count * 2 * prod(shape) for shape, count in shapes if prod(shape) >= BNB_PAGED_MIN_NUMEL)


def step_temporary_bytes(optimizer: str, trainable: int, param_bytes: int, largest: int, torch=(2, 11, 0)) -> int:
    """Extra memory while optimizer.step() runs.

    AdamW foreach (the CUDA default): ``exp_avg_sq_sqrt = torch._foreach_sqrt(exp_avg_sqs)`` is a
    full-size temporary over all parameters of a dtype group (torch/optim/adam.py,
    _multi_tensor_adam); measured: llama2-7b peaks at after-backward + 2 bytes x P.
    AdamW with foreach=False (_single_tensor_adam): ``exp_avg_sq.sqrt() / bias_correction2_sqrt`` holds
    two tensors the size of the parameter being updated, at most the largest.
    torch.optim.Adafactor runs its single-tensor loop by default (rule adafactor-single-tensor-default):
    ``var_estimate = row_var @ col_var`` for one matrix at a time, updated in place
    (torch/optim/_adafactor.py:330-420), so the largest matrix's size; with foreach it builds them for
    every matrix at once.
    transformers' Adafactor (optimization.py:1221-1292 @5.17), one parameter at a time: the gradient
    and the parameter upcast to fp32 and two update-sized fp32 buffers, 16 bytes per element of the
    largest parameter when it is 16-bit, 8 when it is fp32.
    Lion (lion-pytorch's update_fn) computes ``exp_avg.clone().mul_(beta1).add(grad, ...)`` per
    tensor: two copies of the largest tensor. The fused AdamW kernel, 8-bit AdamW and SGD work in place.
    """
    if optimizer == "adamw":
        return trainable * param_bytes
    if optimizer == "adamw_single":
        return 2 * largest * param_bytes
    if optimizer == "adafactor":
        return largest * param_bytes if holds("adafactor-single-tensor-default", torch) else trainable * param_bytes
    if optimizer == "adafactor_hf":
        return (16 if param_bytes == 2 else 8) * largest
    if optimizer == "lion":
        return 2 * largest * param_bytes
    return 0


def param_shapes(m: ModelSpec) -> list[tuple[tuple[int, ...], int]]:
    """(shape, how many) of the model's parameters, for optimizers whose state depends on them."""
    shapes: list[tuple[tuple[int, ...], int]] = [((m.vocab_size, m.hidden_size), 1)]
    if not m.tied_embeddings and m.family != "bert":
        shapes.append(((m.vocab_size, m.hidden_size), 1))
    for lin in linears(m):
        if lin.group == "experts":
            shapes.append(((lin.copies, lin.out_features, lin.in_features), lin.layers))
        else:
            shapes.append(((lin.out_features, lin.in_features), lin.layers))
            if lin.bias:
                shapes.append(((lin.out_features,), lin.layers))
    shapes.append(((m.hidden_size,), m.norms_per_layer * m.n_layers + 1))
    return shapes
