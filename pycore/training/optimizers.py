"""Optimizer states and the temporaries of one optimizer step."""

from __future__ import annotations

from math import prod

from ..model.spec import ModelSpec
from ..model.params import linears

# bitsandbytes 8-bit optimizers: states of tensors with >= 4096 elements are uint8, one fp32 absmax
# per 256-element block (bitsandbytes/optim/optimizer.py: min_8bit_size=4096, blockwise, BLOCKSIZE 256);
# smaller tensors keep 32-bit states.
BNB_MIN_8BIT_SIZE = 4096
BNB_BLOCK = 256
SHAPE_OPTIMIZERS = ("adafactor", "adamw_8bit")     # their state depends on each tensor's shape


def state_bytes(optimizer: str, trainable: int, param_bytes: int, shapes: list[tuple[tuple[int, ...], int]]) -> int:
    """Persistent optimizer state for ``trainable`` parameters stored in ``param_bytes`` each;
    ``shapes`` lists (shape, how many tensors have it) for the optimizers whose state depends on it.

    torch.optim states take the parameter's dtype (torch/optim/adamw.py: zeros_like(p)).
    """
    if optimizer in ("adamw", "adamw_fused"):
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
    if optimizer == "adamw_8bit":
        total = 0
        for shape, count in shapes:
            n = prod(shape)
            if n >= BNB_MIN_8BIT_SIZE:
                total += count * (2 * n + 2 * 4 * -(-n // BNB_BLOCK))
            else:
                total += count * 2 * 4 * n
        return total
    raise ValueError(optimizer)


def step_temporary_bytes(optimizer: str, trainable: int, param_bytes: int, largest: int) -> int:
    """Extra memory while optimizer.step() runs.

    AdamW foreach (the CUDA default): ``exp_avg_sq_sqrt = torch._foreach_sqrt(exp_avg_sqs)`` is a
    full-size temporary over all parameters of a dtype group (torch/optim/adam.py,
    _multi_tensor_adam); measured: llama2-7b peaks at after-backward + 2 bytes x P.
    Adafactor foreach (also the CUDA default): ``var_estimates = [row_var @ col_var ...]`` builds a
    full-size variance estimate for every matrix at once (torch/optim/_adafactor.py,
    _multi_tensor_adafactor). Lion (lion-pytorch's update_fn) computes
    ``exp_avg.clone().mul_(beta1).add(grad, ...)`` per tensor: two copies of the largest tensor.
    The fused AdamW kernel, 8-bit AdamW and SGD work in place.
    """
    if optimizer in ("adamw", "adafactor"):
        return trainable * param_bytes
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
