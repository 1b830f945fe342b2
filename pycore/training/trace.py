"""The step's largest tensors in the order they are allocated and freed: what the caching allocator sees.

Two steady steps of the calibration script (forward with the loss, backward, optimizer.step(),
zero_grad(set_to_none=True)), from the same per-layer costs as the step's moments (timeline.py): each
saved activation is one tensor allocated in its layer's forward and freed in its layer's backward,
working memory comes and goes inside its layer, gradients appear layer by layer in backward and are
freed by zero_grad, optimizer states are created layer by layer inside the first optimizer.step().
The weights are allocated before the step and never freed: they hold whole segments and are left out.
"""

from __future__ import annotations

from .timeline import Static, StepShape

SMALL_BYTES = 1 << 20    # kSmallSize (caching.py)
STEPS = 2     # the first step creates the optimizer states; the second runs on the cache the first left


def training_trace(st: Static, layers: list, head, shape: StepShape, keeps_gradients: bool = False,
                   param_sizes: tuple = ()) -> tuple:
    """("+", id, bytes) / ("-", id) events of STEPS steps. ``param_sizes``: the elements of each weight of
    one layer; gradients, optimizer states and foreach temporaries are per-parameter tensors, so a
    layer's are split in these proportions (one set per state: Adam's exp_avg and exp_avg_sq)."""
    ev: list = []
    n = sum(lc.count for lc in layers)
    per_layer = [lc for lc in layers for _ in range(lc.count)]
    grads_total = st.grads_other + st.grads_per_layer * n
    for step in range(STEPS):
        _forward(ev, step, per_layer, st, head, shape)
        _backward(ev, step, per_layer, st, head, shape, keeps_gradients, param_sizes)
        _optimizer(ev, step, per_layer, st, grads_total, param_sizes)
        if not (keeps_gradients or shape.grads_in_forward):
            _free_grads(ev, step, n, len([b for b in _per_param(st.grads_per_layer, param_sizes) if b > SMALL_BYTES]))
    return tuple(ev)


def _alloc(ev: list, tid, size: int) -> None:
    # 1 MiB or less goes to the small pool's 2 MiB segments, which the replay leaves out (caching.py).
    if size > SMALL_BYTES:
        ev.append(("+", tid, size))


def _large_saved(lc) -> tuple:
    """A layer's saved tensors above the small pool's 1 MiB (the others never reach the replay)."""
    return tuple((name, b) for name, b in lc.saved.items() if b > SMALL_BYTES)


def _forward(ev, step, per_layer, st: Static, head, shape: StepShape) -> None:
    saved = {id(lc): _large_saved(lc) for lc in per_layer}
    for i, lc in enumerate(per_layer):
        _alloc(ev, (step, "copy", i), st.autocast_copy_per_layer)
        big = saved[id(lc)]
        for name, b in big:
            ev.append(("+", (step, "saved", i, name), b))
        if lc.forward_extra > SMALL_BYTES:
            ev.append(("+", (step, "work", i), lc.forward_extra))
            ev.append(("-", (step, "work", i)))
        if shape.checkpointing:
            # torch.utils.checkpoint: the block keeps its input; what the layer computed is freed at once,
            # and autocast's cache is emptied on leaving the checkpointed region.
            _alloc(ev, (step, "ckpt", i), lc.checkpoint_input)
            for name, _ in big:
                ev.append(("-", (step, "saved", i, name)))
            ev.append(("-", (step, "copy", i)))
    if head is not None:
        for name, b in head.saved.items():
            _alloc(ev, (step, "head", name), b)
        _alloc(ev, (step, "logits"), head.logits_bytes)
        _alloc(ev, (step, "loss upcast"), head.loss_forward_extra)
        _alloc(ev, (step, "log-softmax"), head.loss_saved_bytes)
        ev.append(("-", (step, "loss upcast")))


def _backward(ev, step, per_layer, st: Static, head, shape: StepShape, keeps_gradients: bool, sizes: tuple) -> None:
    fresh = step == 0 or not (keeps_gradients or shape.grads_in_forward)
    if head is not None:
        # Two loss-sized gradients (layers.py head_cost): two tensors, not one block of twice the size.
        pieces = _pieces(head.loss_backward_extra, head.loss_saved_bytes)
        for k, b in enumerate(pieces):
            _alloc(ev, (step, "loss grad", k), b)
        ev.append(("-", (step, "log-softmax")))
        for k in range(len(pieces) - 1):
            ev.append(("-", (step, "loss grad", k)))
        if head.loss_forward_extra:
            # .float()'s backward casts the last fp32 gradient to the logits' dtype for the output layer.
            _alloc(ev, (step, "logits grad"), head.logits_bytes)
        ev.append(("-", (step, "loss grad", len(pieces) - 1)))
        if fresh:
            _alloc(ev, ("grad", step, "head"), st.grads_head)
        ev.append(("-", (step, "logits grad")))
        for name in head.saved:
            ev.append(("-", (step, "head", name)))
    saved = {id(lc): _large_saved(lc) for lc in per_layer}
    grads = [b for b in _per_param(st.grads_per_layer, sizes) if b > SMALL_BYTES] if fresh else []
    for i in range(len(per_layer) - 1, -1, -1):
        lc = per_layer[i]
        big = saved[id(lc)]
        if shape.checkpointing:
            _alloc(ev, (step, "copy", i, "re"), st.autocast_copy_per_layer)
            for name, b in big:
                ev.append(("+", (step, "saved", i, name), b))
            if lc.forward_extra > SMALL_BYTES:
                ev.append(("+", (step, "work", i, "re"), lc.forward_extra))
                ev.append(("-", (step, "work", i, "re")))
        _alloc(ev, (step, "act grad", i), lc.backward_extra)
        for k, b in enumerate(grads):
            ev.append(("+", ("grad", step, i, k), b))
        for name, _ in big:
            ev.append(("-", (step, "saved", i, name)))
        ev.append(("-", (step, "act grad", i)))
        ev.append(("-", (step, "ckpt", i)))
        ev.append(("-", (step, "copy", i, "re") if shape.checkpointing else (step, "copy", i)))
    if head is not None:
        ev.append(("-", (step, "logits")))
        if fresh:
            _alloc(ev, ("grad", step, "other"), st.grads_other - st.grads_head)


def _optimizer(ev, step, per_layer, st: Static, grads_total: int, sizes: tuple) -> None:
    if step == 0 and st.optimizer_states:
        # States are created lazily, parameter by parameter, in the order of model.parameters().
        share = st.grads_per_layer / grads_total if grads_total else 1.0 / max(1, len(per_layer))
        per = int(st.optimizer_states * share)
        # One state tensor per moment and parameter (Adam's exp_avg and exp_avg_sq).
        pieces = [b for b in _per_param(per, sizes) if b > SMALL_BYTES]
        for i in range(len(per_layer)):
            for k, b in enumerate(pieces):
                ev.append(("+", ("state", i, k), b))
        _alloc(ev, ("state", "other"), int(st.optimizer_states * st.grads_other / grads_total) if grads_total else 0)
    # foreach AdamW's intermediates (torch._foreach_sqrt of exp_avg_sq, ...) are lists of per-parameter tensors.
    share = st.grads_per_layer / grads_total if grads_total else 0.0
    layer = [b for b in _per_param(int(st.optimizer_temp * share), sizes) if b > SMALL_BYTES]
    temps = layer * len(per_layer)
    temps.append(int(st.optimizer_temp * st.grads_other / grads_total) if grads_total else st.optimizer_temp)
    temps = [b for b in temps if b > SMALL_BYTES]
    for k, b in enumerate(temps):
        ev.append(("+", (step, "optimizer temporaries", k), b))
    for k in range(len(temps)):
        ev.append(("-", (step, "optimizer temporaries", k)))


def _free_grads(ev, step, n: int, pieces: int) -> None:
    for key in ("head", "other"):
        ev.append(("-", ("grad", step, key)))
    for i in range(n):
        for k in range(pieces):
            ev.append(("-", ("grad", step, i, k)))


def _pieces(total: int, unit: int) -> list:
    """``total`` as tensors of ``unit`` bytes where it is a whole number of them, else one tensor."""
    if unit > 0 and total > unit and total % unit == 0:
        return [unit] * (total // unit)
    return [total]



def _per_param(total: int, sizes: tuple) -> list:
    """``total`` bytes as per-parameter tensors in the proportions of ``sizes``: k sets when ``total`` is
    about k times the layer's weights (k states per parameter), else one set scaled to ``total``."""
    weight = sum(sizes)
    if total <= 0 or not weight:
        return [total] if total > 0 else []
    ratio = total / weight
    k = max(1, round(ratio))
    pieces = [int(sz * ratio / k) for _ in range(k) for sz in sizes]
    pieces[-1] += total - sum(pieces)
    return pieces

