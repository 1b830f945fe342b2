"""Each recipe's assumptions, as inputs with defaults (``parallelism.options`` in a request), so that
a user with other settings can change them. Defaults are the frameworks' own, with their source."""

from __future__ import annotations

from dataclasses import dataclass

from ..schema import choice, flag, integer, number, spec, text

# DeepSpeed's ZeRO defaults, deepspeed/runtime/zero/config.py @38327e07 (lines 109-237).
DS_REDUCE_BUCKET = 500_000_000
DS_ALLGATHER_BUCKET = 500_000_000
DS_PREFETCH_BUCKET = 50_000_000
DS_MAX_LIVE_PARAMETERS = 1_000_000_000
DS_PERSISTENCE_THRESHOLD = 100_000
DS_SUB_GROUP = 1_000_000_000


@dataclass(frozen=True)
class HfOptions:
    """The Hugging Face stack has nothing to set beyond the layout."""


@dataclass(frozen=True)
class ZeroPaperOptions:
    optimizer_bytes: int = spec(12, integer(0, 64, doc="K: optimizer bytes per parameter (ZeRO paper: 12)"))
    partition_activations: bool = spec(False, flag(doc="Pa: split the activation checkpoints across the MP ranks"))


@dataclass(frozen=True)
class DeepSpeedEstimatorOptions:
    version: str = spec("current", choice(("current", "before-pr5099"),
                                          doc="ZeRO-2 formula: current, or before DeepSpeed PR #5099 (2024-06-04)"))
    additional_buffer_factor: float = spec(1.5, number(1.0, 10.0))
    zero_init: bool = spec(True, flag(doc="ZeRO-3: deepspeed.zero.Init (parameters partitioned as created)"))


@dataclass(frozen=True)
class PlaybookOptions:
    optimizer_bytes: int = spec(8, integer(0, 64, doc="optimizer bytes per parameter in the Playbook's figures"))


@dataclass(frozen=True)
class DeepSpeedOptions:
    reduce_bucket_size: int = spec(DS_REDUCE_BUCKET, integer(0, 10 ** 12, unit="elements"))
    allgather_bucket_size: int = spec(DS_ALLGATHER_BUCKET, integer(0, 10 ** 12, unit="elements"))
    overlap_comm: bool | None = spec(None, flag(nullable=True, doc="double reduce buckets (default: on for stage 3)"))
    prefetch_bucket_size: int = spec(DS_PREFETCH_BUCKET, integer(0, 10 ** 12, unit="elements",
                                                                  doc="stage3_prefetch_bucket_size"))
    max_live_parameters: int = spec(DS_MAX_LIVE_PARAMETERS, integer(0, 10 ** 13, unit="elements",
                                                                     doc="stage3_max_live_parameters"))
    param_persistence_threshold: int = spec(DS_PERSISTENCE_THRESHOLD, integer(0, 10 ** 12, unit="elements",
                                                                               doc="stage3_param_persistence_threshold"))
    sub_group_size: int = spec(DS_SUB_GROUP, integer(1, 10 ** 13, unit="elements"))
    grad_accum_dtype: str | None = spec(None, choice(("bf16", "fp32"), nullable=True,
                                                     doc="data_types.grad_accum_dtype (default: fp32 at stage 0, "
                                                         "the model's dtype with ZeRO)"))


@dataclass(frozen=True)
class Fsdp2Options:
    reshard_after_forward: bool = spec(True, flag(doc="free each block's gathered parameters after its forward"))
    shard_group: int | None = spec(None, integer(1, 65536, nullable=True,
                                                 doc="HSDP: shard within groups of this many GPUs, replicate across "
                                                     "(default: all data x context x expert ranks)"))
    activation_checkpoint: str = spec("hf", choice(("hf", "torchtitan-op"),
                                                   doc="what recompute=selective saves: the attention core's inputs "
                                                       "(hf), or torchtitan's per-op policy (every other matmul and "
                                                       "SDPA outputs)"))
    last_block_resharded: bool = spec(False, flag(doc="torchtitan keeps the last block unsharded after forward"))
    torchtitan_version: str = spec("0.2.2", text(16, doc="torchtitan's version (assets/version.txt): its loss "
                                                         "rules (torchtitan-frees-logits, torchtitan-compiles-loss) "
                                                         "and torchtitan-repeats-kv"))
    compile: bool = spec(False, flag(doc="[compile] enable with the default components (model, loss): from "
                                         "torchtitan 0.1.0 the loss is compiled"))
    async_tensor_parallel: bool = spec(False, flag(doc="parallelism.enable_async_tensor_parallel: TP's "
                                                       "collectives run inside the matmuls (needs compile)"))
    cp_rotate_method: str = spec("allgather", choice(("allgather", "alltoall"),
                                                     doc="experimental.context_parallel_rotate_method: ring "
                                                         "attention gathers every rank's K/V, or passes one on"))


@dataclass(frozen=True)
class MegatronOptions:
    distributed_optimizer: bool = spec(False, flag(doc="shard fp32 main params and Adam states over data parallel"))
    formula_version: str = spec("current", choice(("current", "2026-01", "2025-08", "2024"),
                                                  doc="theoretical_memory_usage.py as of d98e8a64 (current), "
                                                      "9ad59065 (2026-01), a6c6250f (2025-08) or 2bfe9beaae (2024)"))
    activation_formula: str = spec("theoretical", choice(("theoretical", "korthikanti"),
                                                         doc="Megatron's printed estimate, or Korthikanti et al. "
                                                             "2022 Table 2 with the schedule's factor"))
    make_vocab_size_divisible_by: int = spec(128, integer(1, 65536))
    attention_scores_saved: bool = spec(True, flag(doc="Korthikanti: the 5as/h attention-score term (off with "
                                                       "flash attention)"))
    # --use-precision-aware-optimizer's dtypes (megatron/training/arguments.py @d98e8a64, 3667-3686)
    main_grads_dtype: str = spec("fp32", choice(("fp32", "bf16"), doc="--main-grads-dtype"))
    main_params_dtype: str = spec("fp32", choice(("fp32", "fp16"), doc="--main-params-dtype"))
    exp_avg_dtype: str = spec("fp32", choice(("fp32", "fp16", "bf16", "fp8"), doc="--exp-avg-dtype"))
    exp_avg_sq_dtype: str = spec("fp32", choice(("fp32", "fp16", "bf16", "fp8"), doc="--exp-avg-sq-dtype"))


RECIPE_OPTIONS = {"hf": HfOptions, "zero-paper": ZeroPaperOptions, "deepspeed-estimator": DeepSpeedEstimatorOptions,
                  "deepspeed": DeepSpeedOptions, "fsdp2": Fsdp2Options, "megatron": MegatronOptions,
                  "playbook": PlaybookOptions}
