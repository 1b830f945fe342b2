"""torchtitan's loss as its versions run it (recipe fsdp2), applied to the step's moments.

- ``torchtitan-frees-logits``: train.py's forward_backward_step runs ``loss = loss_fn(pred, labels);
  del pred; loss.backward()`` (PR #391, 2024-06-12, "del logits to save 3.9G memory"): the bf16
  logits are gone before the loss backward. Eager cross_entropy(pred.float()) keeps only its fp32
  log-softmax for backward.
- ``torchtitan-compiles-loss``: with [compile] enable (and, from PR #1608, "loss" in
  compile.components, the default) build_cross_entropy_loss wraps the loss in torch.compile
  (components/loss.py, PR #1033, 2025-04-02). Inductor fuses the fp32 upcast, log-softmax and
  nll_loss: the compiled graph saves its bf16 input and each token's fp32 log-sum-exp (the
  min-cut partitioner recomputes the rest, torch/_functorch/partitioners.py), and its backward
  writes the logits' gradient in bf16. No T x V fp32 tensor exists. No reference run has a compiled
  loss (the published torchtitan runs are at 9dec370, 2024-12): this rule is modelled, not verified.

With tensor parallelism torchtitan turns on loss parallelism (train.py: enable_loss_parallel = not
disable_loss_parallel, default False), and the loss runs DTensor's handlers
(torch/distributed/tensor/parallel/loss.py @2.14.1, _log_softmax and
_nll_loss_and_log_softmax_backward) on the vocabulary shards: forward holds the fp32 input, the
shifted logits and their exp at once (one loss-sized fp32 tensor more than eager log_softmax), and
backward builds zeros_like(x), exp(x) and their sum beside the saved log-probabilities (one more
than eager's two gradients). This term was read from the source while looking into the 70B run's
miss (a verify case); no constant was fitted.
"""

from __future__ import annotations

from ..training.activations import FP32
from ..training.timeline import Snapshot
from ..versions import holds, version_tuple

LOSS = "logits and loss"
_LOGITS = ("logits", "logits (held by the output)")


def torchtitan_loss(snaps: list[Snapshot], ctx, vocab: int, version: str, compiled: bool,
                    loss_parallel: bool = False) -> list[Snapshot]:
    """The moments with torchtitan's loss: logits freed before backward, or the compiled loss, and
    loss parallelism's extra fp32 tensor under tensor parallelism."""
    v = version_tuple(version, "parallelism.options.torchtitan_version", "a torchtitan version", "0.2.2")
    compiled = compiled and holds("torchtitan-compiles-loss", v)
    frees = holds("torchtitan-frees-logits", v)
    tv = ctx.tokens * vocab
    out = []
    for s in snaps:
        parts = dict(s.parts)
        if LOSS not in parts:
            out.append(s)
            continue
        if compiled:
            parts = _compiled(s, parts, ctx.compute_bytes * tv, FP32 * ctx.tokens)
        else:
            if frees and s.phase == "backward":
                parts[LOSS] = {k: b for k, b in parts[LOSS].items() if k not in _LOGITS}
            if loss_parallel and "loss" in s.moment:
                extra = "exp of the shifted logits (loss parallel, fp32)" if s.phase == "forward" else \
                    "zeros and exp of the log-probabilities (loss parallel backward, fp32)"
                parts["temporaries"] = {**parts.get("temporaries", {}), extra: FP32 * tv}
        out.append(Snapshot(s.phase, s.moment, tuple((k, d) for k, d in parts.items())))
    return out


def _compiled(s: Snapshot, parts: dict, logits: int, lse: int) -> dict:
    loss_moment = "loss" in s.moment
    if loss_moment:
        parts[LOSS] = {"logits (saved by the compiled loss)": logits, "log-sum-exp (fp32)": lse}
        grads = {"logits gradient (bf16, compiled loss)": logits} if s.phase == "backward" else {}
        parts["temporaries"] = grads
    else:
        parts[LOSS] = {}                  # the compiled graph's saved tensors go after the loss backward
    return parts
