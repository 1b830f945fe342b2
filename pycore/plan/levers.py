"""The levers of the "make it fit" search (pycore/plan/fit.py) as one table: each change the search can
make, what it changes, the ranking weight of each of its rungs, the cost a plan states, and where that
cost comes from. The ladders read their costs from ``LEVERS`` and nowhere else.

The costs rank plans; they are not measurements. Where a cost is a known figure it cites it: full
recomputation runs each layer's forward again in backward, about a third more compute (the forward is
one of three passes; Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
Models", section 4: 30-40% overhead). A fused loss computes the same loss (Liger's fused linear
cross-entropy: the same cross-entropy, chunked; Liger-Kernel's README reports higher throughput, so it is
ranked as nearly free, but it needs the liger-kernel package). Offloading the checkpointed inputs moves
one hidden-state tensor per layer over PCIe each way per step (Unsloth reports a small slowdown);
offloading every saved activation (torchtune) moves all of them. Changes that alter what is trained or
how numbers are stored are costed above any slowdown, because they change the result.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

MAX_HALVINGS = 6                # micro-batch down to 1/64, sequences down to 1/4
RECOMPUTE_COST = 0.33           # Korthikanti et al. 2022: one extra forward of three passes
MICRO_BATCH_COST = 0.04         # ranking weight per halving: smaller matmuls, more launches (not measured)
CHANGES_TRAINING = 1.0          # a change to what is trained or to the data: above any slowdown
OFFLOAD_COST = 0.6              # ranking weight: a step bound by PCIe and the CPU's Adam (not measured)
GPU_DOUBLING_COST = 0.5         # ranking weight per doubling of the GPUs asked for
FUSED_LOSS_COST = 0.02           # ranking weight: the same loss from a Triton kernel; needs a package
CCE_COST = 0.03                  # Cut Cross-Entropy: the same loss, recomputes logits blockwise in backward
CHECKPOINT_OFFLOAD_COST = 0.08   # ranking weight: one hidden state per layer over PCIe each way (not measured)
FULL_OFFLOAD_COST = 0.5          # ranking weight: every saved activation over PCIe, above recomputation (0.33)
SMALLER_ADAPTER_COST = 0.8       # a change of what is trained, below the change of method (CHANGES_TRAINING)
_NOT_MEASURED = "a ranking weight, not measured: "


@dataclass(frozen=True)
class Rung:
    text: str                   # what changes, for the user
    cost: float                 # ranking weight, summed over a plan's rungs
    cost_text: str              # the stated cost
    workload: tuple = ()        # (field, value) pairs set on the workload
    precision: tuple = ()
    parallelism: tuple = ()


@dataclass(frozen=True)
class Lever:
    """One change the search can make, on the plan's lever ``lever``."""
    lever: str                  # the ladder it belongs to, as a plan names it
    changes: str                # what it changes
    costs: tuple                # ranking weight of its 1st, 2nd, ... rung (summed over a plan's rungs)
    cost_text: str              # the cost a plan states; {names} are filled in per rung
    source: str                 # where the cost comes from

    def rung(self, i: int, text: str, workload: tuple = (), precision: tuple = (), parallelism: tuple = (),
             **fill) -> Rung:
        """Its ``i``-th rung (from 0): ``text`` says what changes for this run."""
        return Rung(text, self.costs[i], self.cost_text.format(**fill), workload, precision, parallelism)


LEVERS = {
    "micro-batch": Lever("batch", "the micro-batch, with gradient accumulation keeping the global batch",
                         tuple(MICRO_BATCH_COST * n for n in range(1, MAX_HALVINGS + 1)),
                         "slightly slower: {k} smaller micro-batches per step",
                         _NOT_MEASURED + "per halving, smaller matmuls and more kernel launches"),
    "inference-batch": Lever("batch", "the batch, run in more passes over the same prompts",
                             tuple(MICRO_BATCH_COST * n for n in range(1, MAX_HALVINGS + 1)),
                             "slower: {k} passes instead of one", _NOT_MEASURED + "per halving, as the micro-batch"),
    "checkpointing": Lever("checkpointing", "gradient checkpointing on every layer", (RECOMPUTE_COST,),
                           "about 33% slower: recomputation (Korthikanti et al. 2022)",
                           "Korthikanti et al. 2022, section 4: full recomputation runs one more forward of "
                           "three passes (30-40% overhead)"),
    "sdpa": Lever("attention", "SDPA attention instead of eager", (0.0,), "no cost: the same attention, a fused kernel",
                  "the same attention (torch.nn.functional.scaled_dot_product_attention), faster than eager"),
    "fused-adamw": Lever("optimizer", "torch's fused AdamW", (0.0,), "no cost: the same update in one kernel",
                         "torch.optim.AdamW(fused=True): the same update as the foreach one"),
    "adamw-8bit": Lever("optimizer", "8-bit AdamW states (bitsandbytes)", (0.3,), "changes the optimizer: 8-bit states",
                        _NOT_MEASURED + "a change of the optimizer's numerics (Dettmers et al. 2022, 8-bit "
                        "optimizers), below a change of what is trained"),
    "liger-flce": Lever("loss", "Liger's fused linear cross-entropy", (FUSED_LOSS_COST,),
                        "the same loss from a chunked Triton kernel; needs liger-kernel",
                        _NOT_MEASURED + "the same loss; Liger-Kernel's README reports higher throughput"),
    "cut-cross-entropy": Lever("loss", "Cut Cross-Entropy", (CCE_COST,),
                               "the same loss; backward recomputes the logits; needs cut-cross-entropy",
                               _NOT_MEASURED + "the same loss (Wijmans et al. 2024), with the logits recomputed "
                               "blockwise in backward"),
    "offload-checkpoints": Lever("activation offload", "the checkpointed layer inputs on the CPU (Unsloth)",
                                 (CHECKPOINT_OFFLOAD_COST,),
                                 "slightly slower: one hidden state per layer crosses PCIe each way; needs pinned "
                                 "host memory", _NOT_MEASURED + "one hidden state per layer over PCIe (Unsloth "
                                 "reports a small slowdown)"),
    "offload-activations": Lever("activation offload", "every saved activation on the CPU (torchtune)",
                                 (FULL_OFFLOAD_COST,),
                                 "slower unless the copies overlap compute: every activation crosses PCIe; needs "
                                 "pinned host memory for all of them",
                                 _NOT_MEASURED + "every saved activation over PCIe, above recomputation (0.33)"),
    "smaller-adapter": Lever("adapter size", "a PEFT config's r halved", (SMALLER_ADAPTER_COST, SMALLER_ADAPTER_COST * 2),
                             "changes the training: a smaller adapter",
                             _NOT_MEASURED + "a change of what is trained, below a change of method (1.0)"),
    "lora": Lever("fine-tuning method", "LoRA instead of full training", (CHANGES_TRAINING,),
                  "changes the training: LoRA trains adapters only",
                  _NOT_MEASURED + "a change of what is trained, above any slowdown"),
    "qlora": Lever("fine-tuning method", "QLoRA instead of full training", (CHANGES_TRAINING + 0.2,),
                   "changes the training: LoRA adapters over a 4-bit base",
                   _NOT_MEASURED + "LoRA's cost and the 4-bit base's (0.2)"),
    "lora-to-qlora": Lever("fine-tuning method", "QLoRA instead of LoRA", (0.2,),
                           "changes the base weights' storage: 4-bit NF4",
                           _NOT_MEASURED + "a change of how the frozen weights are stored (Dettmers et al. 2023, "
                           "QLoRA), as int8 weights"),
    "pure-precision": Lever("precision", "16-bit weights without fp32 master copies", (0.5,),
                            "changes the numerics: {dtype} weights without fp32 master copies",
                            _NOT_MEASURED + "a change of the training's numerics, below a change of what is trained"),
    "int8-weights": Lever("weights", "int8 weights for inference", (0.2,), "changes the numerics: 8-bit weights",
                          _NOT_MEASURED + "a change of the numerics"),
    "int4-weights": Lever("weights", "int4 weights for inference", (0.4,), "changes the numerics: 4-bit weights",
                          _NOT_MEASURED + "a larger change of the numerics than int8"),
    "fp8-kv-cache": Lever("KV cache", "an fp8 KV cache", (0.1,), "changes the numerics: an 8-bit cache",
                          _NOT_MEASURED + "a change of the cache's numerics only"),
    "zero-offload": Lever("ZeRO-Offload", "DeepSpeed ZeRO-2 with the optimizer states on the CPU", (OFFLOAD_COST,),
                          "slower: the optimizer step runs on the CPU and the gradients cross PCIe; needs host memory",
                          _NOT_MEASURED + "a step bound by PCIe and the CPU's Adam (Ren et al. 2021, ZeRO-Offload)"),
    "zero-infinity": Lever("ZeRO-Infinity", "DeepSpeed ZeRO-3 with parameters and optimizer states on the CPU",
                           (2 * OFFLOAD_COST,), "much slower: every layer's parameters stream from the CPU each pass; "
                                                "needs host memory",
                           _NOT_MEASURED + "twice ZeRO-Offload's: the parameters cross PCIe too (Rajbhandari et al. "
                           "2021, ZeRO-Infinity)"),
    "fsdp2-gpus": Lever("GPUs", "the model states sharded over 2, 4 or 8 GPUs (FSDP2)",
                        (GPU_DOUBLING_COST * 1, GPU_DOUBLING_COST * 2, GPU_DOUBLING_COST * 3),
                        "needs {n} GPUs; the global batch grows {n}-fold unless the batch or the accumulation is lowered",
                        _NOT_MEASURED + "per doubling of the GPUs asked for"),
    "shorter-sequences": Lever("sequence length", "training sequences halved, then quartered",
                               (CHANGES_TRAINING * 1.5, CHANGES_TRAINING * 2.5), "changes the data: shorter sequences",
                               _NOT_MEASURED + "a change of the data, above a change of method"),
    "shorter-prompts": Lever("sequence length", "prompts halved, then quartered",
                             (CHANGES_TRAINING * 1.5, CHANGES_TRAINING * 2.5), "shorter prompts",
                             _NOT_MEASURED + "a change of the requests, above a change of numerics"),
}


def method_ladders(req) -> list:
    """(lever, rungs) for the training methods' levers this request can still pull: a fused loss,
    activation offloading, a smaller adapter (pycore/training/kernels.py, offload.py, adapters.py)."""
    w = req.workload
    if w.mode == "inference":
        return []
    out = []
    if w.loss_kernel in ("default", "torchtune-chunked", "flash-attn-ce") and req.model.head in ("", "causal-lm") \
            and req.model.family != "bert":
        out.append(ladder("liger-flce", [LEVERS["liger-flce"].rung(0, "Liger fused linear cross-entropy (no logits kept)",
                                                     (("loss_kernel", "liger-flce"),)),
                           LEVERS["cut-cross-entropy"].rung(0, "Cut Cross-Entropy (logits recomputed blockwise)",
                                                            (("loss_kernel", "cut-cross-entropy"),))]))
    if w.activation_offload == "none" and req.parallelism.recipe == "hf":
        if w.gradient_checkpointing:
            out.append(ladder("offload-checkpoints", [LEVERS["offload-checkpoints"].rung(
                0, "offload the checkpointed layer inputs to the CPU (Unsloth)", (("activation_offload", "unsloth"),))]))
        else:
            out.append(ladder("offload-activations", [LEVERS["offload-activations"].rung(
                0, "offload saved activations to the CPU (torchtune OffloadActivations)",
                (("activation_offload", "torchtune"),))]))
    rungs = _smaller_adapter(w)
    if rungs:
        out.append(ladder("smaller-adapter", rungs))
    return out


def ladder(key: str, rungs: list) -> tuple[str, list]:
    """(the name of lever ``key`` in the table, the rungs)."""
    return LEVERS[key].lever, rungs


def _smaller_adapter(w) -> list:
    """Halve a PEFT config's r twice (its whole config is the patch: workload.peft_config)."""
    cfg = w.peft_config
    if w.mode == "peft" and cfg is not None and isinstance(cfg.get("r"), int) and cfg.get("r") >= 4:
        r = cfg.get("r")
        return [LEVERS["smaller-adapter"].rung(
            i, f"{cfg.peft_type} r={r // k} instead of {r}",
            (("peft_config", replace(cfg, knobs=tuple((key, r // k if key == "r" else v) for key, v in cfg.knobs))),))
            for i, k in ((0, 2), (1, 4))]
    return []


def levers_markdown() -> str:
    """The table of levers, as the Training methods page shows it."""
    out = ["| lever | change | ranking weight per rung | stated cost | source |", "| --- | --- | --- | --- | --- |"]
    for lever in LEVERS.values():
        costs = ", ".join(f"{c:g}" for c in lever.costs)
        out.append(f"| {lever.lever} | {lever.changes} | {costs} | {lever.cost_text} | {lever.source} |")
    return "\n".join(out) + "\n"
