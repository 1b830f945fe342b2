"""The training methods' memory levers for the "make it fit" search: a fused loss, activation offloading
and a smaller adapter, each with its stated cost (pycore/training/kernels.py, offload.py, adapters.py).

The costs rank plans; they are not measurements. A fused loss computes the same loss (Liger's fused
linear cross-entropy: the same cross-entropy, chunked; Liger-Kernel's README reports higher throughput,
so it is ranked as nearly free, but it needs the liger-kernel package). Offloading the checkpointed
inputs moves one hidden-state tensor per layer over PCIe each way per step (Unsloth reports a small
slowdown); offloading every saved activation (torchtune) moves all of them. A smaller adapter changes
what is trained, so it is costed like the other changes of the training.
"""

from __future__ import annotations

from dataclasses import replace

FUSED_LOSS_COST = 0.02           # ranking weight: the same loss from a Triton kernel; needs a package
CCE_COST = 0.03                  # Cut Cross-Entropy: the same loss, recomputes logits blockwise in backward
CHECKPOINT_OFFLOAD_COST = 0.08   # ranking weight: one hidden state per layer over PCIe each way (not measured)
FULL_OFFLOAD_COST = 0.5          # ranking weight: every saved activation over PCIe, above recomputation (0.33)
SMALLER_ADAPTER_COST = 0.8       # a change of what is trained, below the change of method (1.0 in fit.py)


def method_ladders(req, rung) -> list:
    """(lever, rungs) for the training levers this request can still pull; ``rung`` builds a Rung."""
    w = req.workload
    if w.mode == "inference":
        return []
    out = []
    if w.loss_kernel in ("default", "torchtune-chunked", "flash-attn-ce") and req.model.head in ("", "causal-lm") \
            and req.model.family != "bert":
        out.append(("loss", [rung("Liger fused linear cross-entropy (no logits kept)", FUSED_LOSS_COST,
                                  "the same loss from a chunked Triton kernel; needs liger-kernel",
                                  (("loss_kernel", "liger-flce"),)),
                             rung("Cut Cross-Entropy (logits recomputed blockwise)", CCE_COST,
                                  "the same loss; backward recomputes the logits; needs cut-cross-entropy",
                                  (("loss_kernel", "cut-cross-entropy"),))]))
    if w.activation_offload == "none" and req.parallelism.recipe == "hf":
        if w.gradient_checkpointing:
            out.append(("activation offload", [rung(
                "offload the checkpointed layer inputs to the CPU (Unsloth)", CHECKPOINT_OFFLOAD_COST,
                "slightly slower: one hidden state per layer crosses PCIe each way; needs pinned host memory",
                (("activation_offload", "unsloth"),))]))
        else:
            out.append(("activation offload", [rung(
                "offload saved activations to the CPU (torchtune OffloadActivations)", FULL_OFFLOAD_COST,
                "slower unless the copies overlap compute: every activation crosses PCIe; needs pinned host "
                "memory for all of them", (("activation_offload", "torchtune"),))]))
    rungs = _smaller_adapter(w, rung)
    if rungs:
        out.append(("adapter size", rungs))
    return out


def _smaller_adapter(w, rung) -> list:
    """Halve a PEFT config's r twice (its whole config is the patch: workload.peft_config)."""
    cfg = w.peft_config
    if w.mode == "peft" and cfg is not None and isinstance(cfg.get("r"), int) and cfg.get("r") >= 4:
        r = cfg.get("r")
        return [rung(f"{cfg.peft_type} r={r // k} instead of {r}", SMALLER_ADAPTER_COST * i,
                     "changes the training: a smaller adapter",
                     (("peft_config", replace(cfg, knobs=tuple((key, r // k if key == "r" else v)
                                                               for key, v in cfg.knobs))),))
                for i, k in ((1, 2), (2, 4))]
    return []
