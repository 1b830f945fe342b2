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


def _sum_saved(layers: list[LayerCost], upto: int, checkpointing: bool) -> tuple[dict, int]:
    """What layers [0, upto) keep, by name, and their total."""
    kept: dict = {}
    i = 0
    for lc in layers:
        n = max(0, min(lc.count, upto - i))
        i += lc.count
        if not n:
            continue
        if checkpointing:
            kept["checkpointed layer inputs"] = kept.get("checkpointed layer inputs", 0) + n * lc.checkpoint_input
        else:
            for name, b in lc.saved.items():
                kept[name] = kept.get(name, 0) + n * b
    return kept, sum(kept.values())


def _layer_at(layers: list[LayerCost], index: int) -> LayerCost:
    i = 0
    for lc in layers:
        if index < i + lc.count:
            return lc
        i += lc.count
    return layers[-1]


def training_snapshots(st: Static, layers: list[LayerCost], head: HeadCost, checkpointing: bool) -> list[Snapshot]:
    n_layers = sum(lc.count for lc in layers)
    weights = ("weights", dict(st.weights))
    opt = ("optimizer states", {"optimizer states": st.optimizer_states})
    all_kept, _ = _sum_saved(layers, n_layers, checkpointing)
    copies_all = st.autocast_copy_per_layer * n_layers
    head_saved = dict(head.saved)
    snaps: list[Snapshot] = []

    # Forward: the last layer at its busiest moment (every earlier layer's activations kept).
    last = _layer_at(layers, n_layers - 1)
    kept_before, _ = _sum_saved(layers, n_layers - 1, checkpointing)
    working = {"layer working memory": last.forward_extra}
    if checkpointing:
        working["layer activations (not kept under checkpointing)"] = last.saved_total()
    else:
        kept_before = _merge(kept_before, last.saved)
    snaps.append(Snapshot("forward", "last layer's forward", (
        weights, ("autocast weight copies", _nz({"16-bit weight copies": copies_all})), opt,
        ("activations", kept_before), ("temporaries", working))))

    # Forward end: the loss has run; under checkpointing, autocast's cache is freed at exit except
    # for the output head's copy, which lm_head keeps for backward.
    copies_fwd_end = st.autocast_copy_head + (0 if checkpointing else copies_all)
    logits = {"logits": head.logits_bytes, "loss log-softmax": head.loss_saved_bytes}
    acts_end = _merge(all_kept, head_saved)
    snaps.append(Snapshot("forward", "loss computation (fp32 copy of the logits)", (
        weights, ("autocast weight copies", _nz({"16-bit weight copies": copies_fwd_end})), opt,
        ("activations", acts_end), ("logits and loss", logits),
        ("temporaries", _nz({"loss input upcast to fp32": head.loss_forward_extra})))))

    # Backward through the loss: two loss-sized gradients exist at once.
    snaps.append(Snapshot("backward", "loss backward (log-softmax gradients)", (
        weights, ("autocast weight copies", _nz({"16-bit weight copies": copies_fwd_end})), opt,
        ("activations", acts_end), ("logits and loss", logits),
        ("temporaries", {"loss gradients": head.loss_backward_extra}))))

    # Backward through the top and the bottom layer (the sum is linear between them).
    for index in sorted({n_layers - 1, 0}):
        lc = _layer_at(layers, index)
        kept, _ = _sum_saved(layers, index, checkpointing)
        kept = _merge(kept, lc.saved)
        if checkpointing:
            kept = _merge(kept, {"checkpointed layer inputs": lc.checkpoint_input})
        grads = st.grads_head + st.grads_per_layer * (n_layers - 1 - index)
        layer_copies = st.autocast_copy_per_layer * (1 if checkpointing else index + 1)
        snaps.append(Snapshot("backward", f"layer {index} backward", (
            weights, ("autocast weight copies", _nz({"16-bit weight copies": layer_copies})), opt,
            ("gradients", _nz({"gradients": grads})), ("activations", kept),
            ("logits and loss", {"logits (held by the output)": head.logits_bytes}),
            ("temporaries", {"activation gradients": lc.backward_extra}))))

    grads_all = st.grads_other + st.grads_per_layer * n_layers
    snaps.append(Snapshot("optimizer step", "optimizer.step()", (
        weights, opt, ("gradients", {"gradients": grads_all}),
        ("temporaries", _nz({"optimizer temporaries": st.optimizer_temp})))))
    return snaps


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def _nz(d: dict) -> dict:
    return {k: v for k, v in d.items() if v}
