"""The moments of a step, each a snapshot of what is allocated; the peak is the largest.

Training follows one steady-state step of the calibration script: forward (with the
model's loss), ``loss.backward()``, release of the output, ``optimizer.step()`` and
``zero_grad(set_to_none=True)``. Gradients therefore appear during backward, and the
logits stay alive until backward ends because the output object still holds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .activations import LayerCost
from .layers import HeadCost


@dataclass(frozen=True)
class Snapshot:
    phase: str            # forward | backward | optimizer step | prefill | decode
    moment: str           # a readable description of the instant
    parts: tuple          # ((category, {name: bytes}), ...)

    def total(self) -> int:
        return self._total

    @cached_property
    def _total(self) -> int:
        return sum(sum(d.values()) for _, d in self.parts)


@dataclass(frozen=True)
class Static:
    """Memory that does not depend on the step's position."""

    weights: dict         # name -> bytes
    optimizer_states: int
    grads_per_layer: int  # trainable gradient bytes of one layer
    grads_other: int      # embeddings, final norm, output head (and BERT's head)
    grads_head: int       # the part of grads_other computed first in backward (output head)
    autocast_copy_per_layer: int
    autocast_copy_head: int
    optimizer_temp: int
    n_layers: int = 1
    state_parts: tuple = ()        # further named optimizer-state items, such as fp32 master weights
    buffers: tuple = ()            # (name, bytes) of framework buffers (gradient buckets, all-gather buffers)
    backward_buffers: tuple = ()   # (name, bytes) of buffers that exist only while gradients are reduced
    compute_buffers: tuple = ()    # (name, bytes) that exist while layers compute, not at the optimizer step
    outside_allocator: tuple = ()  # (name, bytes) on the device but outside torch's allocator (managed memory)
    tied_grad_sum: int = 0         # a tied embedding's gradient and the out-of-place sum at its backward


@dataclass(frozen=True)
class StepShape:
    """What a GPU's share of the step holds beyond one micro-batch on one whole model."""

    checkpointing: bool = False    # full recomputation: each block keeps only its input
    block: int = 1                 # layers per checkpointed block (Megatron's recompute_num_layers)
    in_flight: int = 1             # micro-batches whose activations are held at once (pipeline 1F1B)
    grads_in_forward: bool = False  # gradients stay allocated through forward (gradient accumulation)
    head: bool = True              # this GPU computes the output layer and the loss (last stage)


def _sum_saved(layers: list[LayerCost], upto: int, shape: StepShape) -> tuple[dict, int]:
    """What layers [0, upto) keep, by name, and their total; under full recomputation only the
    inputs of the blocks that start among them."""
    kept: dict = {}
    i = 0
    for lc in layers:
        n = max(0, min(lc.count, upto - i))
        if n and shape.checkpointing:
            blocks = -(-(i + n) // shape.block) - -(-i // shape.block)       # block starts in [i, i + n)
            kept["checkpointed layer inputs"] = kept.get("checkpointed layer inputs", 0) + blocks * lc.checkpoint_input
        elif n:
            for name, b in lc.saved.items():
                kept[name] = kept.get(name, 0) + n * b
        i += lc.count
    return kept, sum(kept.values())


def _block_saved(layers: list[LayerCost], index: int, shape: StepShape) -> dict:
    """Under full recomputation, the recomputed activations of layer ``index``'s block, from the
    block's first layer up to ``index``, which exist while the block runs backward."""
    start = index - index % shape.block
    out: dict = {}
    for j in range(start, index + 1):
        out = _merge(out, _layer_at(layers, j).saved)
    return out


def _layer_at(layers: list[LayerCost], index: int) -> LayerCost:
    i = 0
    for lc in layers:
        if index < i + lc.count:
            return lc
        i += lc.count
    return layers[-1]


def _scaled(d: dict, k: int, suffix: str) -> dict:
    return {f"{name}{suffix}": k * b for name, b in d.items()} if k else {}


def training_snapshots(st: Static, layers: list[LayerCost], head: HeadCost | None,
                       shape: StepShape = StepShape()) -> list[Snapshot]:
    n_layers = sum(lc.count for lc in layers)
    ckpt = shape.checkpointing
    weights = ("weights", dict(st.weights))
    opt = ("optimizer states", _nz({"optimizer states": st.optimizer_states, **dict(st.state_parts)}))
    buffers = ("framework buffers", _nz(dict(st.buffers)))
    gathered = ("framework buffers", _nz(dict(st.compute_buffers)))
    reduce = ("framework buffers", _nz(dict(st.backward_buffers)))
    all_kept, _ = _sum_saved(layers, n_layers, shape)
    # Other micro-batches in flight (1F1B: the first stage holds p of them at once).
    others = _scaled(all_kept, shape.in_flight - 1, f" (x{shape.in_flight - 1} micro-batches in flight)")
    copies_all = st.autocast_copy_per_layer * n_layers
    grads_all = st.grads_other + st.grads_per_layer * n_layers
    early_grads = ("gradients", _nz({"gradients (kept across micro-batches)": grads_all})) if shape.grads_in_forward \
        else ("gradients", {})
    head_saved = dict(head.saved) if head else {}
    snaps: list[Snapshot] = []

    # Forward: the last layer at its busiest moment (every earlier layer's activations kept).
    last = _layer_at(layers, n_layers - 1)
    kept_before, _ = _sum_saved(layers, n_layers - 1, shape)
    working = {"layer working memory": last.forward_extra, **dict(last.comm_buffers)}
    if ckpt:
        working["layer activations (not kept under checkpointing)"] = last.saved_total()
    else:
        kept_before = _merge(kept_before, last.saved)
    snaps.append(Snapshot("forward", "last layer's forward", (
        weights, ("autocast weight copies", _nz({"16-bit weight copies": copies_all})), opt, buffers, gathered,
        early_grads, ("activations", _merge(kept_before, others)), ("temporaries", _nz(working)))))

    copies_fwd_end = st.autocast_copy_head + (0 if ckpt else copies_all)
    acts_end = _merge(_merge(all_kept, head_saved), others)
    if head:
        # Forward end: the loss has run; under checkpointing, autocast's cache is freed at exit except
        # for the output head's copy, which lm_head keeps for backward.
        logits = _nz({"logits": head.logits_bytes, head.loss_saved_name: head.loss_saved_bytes})
        snaps.append(Snapshot("forward", "loss computation (fp32 copy of the logits)", (
            weights, ("autocast weight copies", _nz({"16-bit weight copies": copies_fwd_end})), opt, buffers, gathered,
            early_grads, ("activations", acts_end), ("logits and loss", logits),
            ("temporaries", _nz({head.forward_extra_name: head.loss_forward_extra})))))
        # Backward through the loss: two loss-sized gradients exist at once.
        snaps.append(Snapshot("backward", "loss backward (log-softmax gradients)", (
            weights, ("autocast weight copies", _nz({"16-bit weight copies": copies_fwd_end})), opt, buffers, gathered,
            early_grads, ("activations", acts_end), ("logits and loss", logits),
            ("temporaries", {head.backward_extra_name: head.loss_backward_extra}))))

    # Backward through the top and the bottom layer (the sum is linear between them).
    for index in sorted({n_layers - 1, 0}):
        lc = _layer_at(layers, index)
        kept, _ = _sum_saved(layers, index, shape)
        if ckpt:
            kept = _merge(kept, {"checkpointed layer inputs": lc.checkpoint_input})
            kept = _merge(kept, _block_saved(layers, index, shape) if shape.block > 1 else lc.saved)
        else:
            kept = _merge(kept, lc.saved)
        grads = grads_all if shape.grads_in_forward else \
            (st.grads_head if head else 0) + st.grads_per_layer * (n_layers - 1 - index)
        layer_copies = st.autocast_copy_per_layer * (shape.block if ckpt else index + 1)
        snaps.append(Snapshot("backward", f"layer {index} backward", (
            weights, ("autocast weight copies", _nz({"16-bit weight copies": layer_copies})), opt, buffers, gathered,
            reduce,
            ("gradients", _nz({"gradients": grads})), ("activations", _merge(kept, others)),
            ("logits and loss", _nz({"logits (held by the output)": head.logits_bytes if head else 0})),
            ("temporaries", _nz({"activation gradients": lc.backward_extra, **dict(lc.comm_buffers)})))))

    if st.tied_grad_sum and head:
        # The embedding's backward is the last: the output layer's gradient of the shared weight has waited in
        # its AccumulateGrad's input buffer as a transposed view (linear's backward), so the embedding's
        # gradient is added out of place (torch/csrc/autograd/input_buffer.cpp accumulate): three
        # vocab x hidden gradients at once, the two addends freed after.
        snaps.append(Snapshot("backward", "embedding backward: the tied weight's two gradients added", (
            weights, opt, buffers, reduce, ("gradients", {"gradients": grads_all}),
            ("temporaries", {"embedding gradient and the sum (tied output layer)": st.tied_grad_sum}))))

    snaps.append(Snapshot("optimizer step", "optimizer.step()", (
        weights, opt, buffers, ("gradients", {"gradients": grads_all}),
        ("temporaries", _nz({"optimizer temporaries": st.optimizer_temp})))))
    return snaps


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def _nz(d: dict) -> dict:
    return {k: v for k, v in d.items() if v}
