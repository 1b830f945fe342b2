"""A training layout: how many GPUs, how the model is split across them, and by which framework's recipe.

GPUs = data x tensor x pipeline x context x expert parallel degrees. Expert-parallel ranks are
data-parallel for the dense parts (each processes its own micro-batch and exchanges tokens with
all-to-all), so dense model states shard over dp x cp x ep and expert states over dp x cp
(Megatron's expert-data-parallel group; torchtitan's dp_shard_cp mesh).

Each recipe states its assumptions as options with defaults (``parallel/recipes.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import MAX_LAYERS, InputError
from ..schema import TRAINING_MODES, choice, flag, int_list, integer, spec, validate

RECIPES = ("hf", "zero-paper", "deepspeed", "deepspeed-estimator", "fsdp2", "megatron", "playbook")
RECIPE_LABELS = (("hf", "Hugging Face (Trainer / accelerate)"), ("zero-paper", "ZeRO paper (2+2+12 bytes)"),
                 ("deepspeed", "DeepSpeed (bf16, as it runs)"),
                 ("deepspeed-estimator", "DeepSpeed's estimate_zero2/3 formulas"),
                 ("fsdp2", "PyTorch FSDP2 (torchtitan)"), ("megatron", "Megatron-Core (theoretical_memory_usage)"),
                 ("playbook", "Ultra-Scale Playbook figures"))
OFFLOAD = ("none", "cpu", "nvme")
RECOMPUTE = ("none", "selective", "full")
RECOMPUTE_LABELS = (("none", "none"), ("selective", "selective (attention core)"), ("full", "full (every layer)"))
MAX_DEGREE = 65536
_TRAIN = TRAINING_MODES


@dataclass(frozen=True)
class Parallelism:
    recipe: str = spec("hf", choice(RECIPES, url="recipe", cli="--recipe", modes=_TRAIN, labels=RECIPE_LABELS,
                                    doc="the framework whose memory recipe is modelled"))
    data_parallel: int = spec(1, integer(1, MAX_DEGREE, url="dp", cli="--dp", modes=_TRAIN,
                                         doc="data-parallel (sharding) degree"))
    tensor_parallel: int = spec(1, integer(1, 1024, url="tp", cli="--tp", modes=_TRAIN,
                                           doc="tensor-parallel degree (Megatron column/row splits)"))
    pipeline_parallel: int = spec(1, integer(1, 1024, url="pp", cli="--pp", modes=_TRAIN,
                                             doc="pipeline stages (recipe hf: GPUs of a device_map layer split)"))
    virtual_stages: int = spec(1, integer(1, 128, url="vpp", cli="--vpp", modes=_TRAIN,
                                          doc="interleaved 1F1B: model chunks per stage"))
    context_parallel: int = spec(1, integer(1, 1024, url="cp", cli="--cp", modes=_TRAIN,
                                            doc="context parallelism (ring attention)"))
    expert_parallel: int = spec(1, integer(1, 4096, url="ep", cli="--ep", modes=_TRAIN,
                                           doc="expert parallelism (MoE experts per rank)"))
    expert_tensor_parallel: int | None = spec(None, integer(1, 1024, cli="--etp", nullable=True, modes=_TRAIN,
                                                            doc="expert tensor parallelism: the routed experts' TP "
                                                                "degree (recipe megatron; default: the tensor "
                                                                "degree, Megatron's --expert-tensor-parallel-size)"))
    sequence_parallel: bool = spec(False, flag(url="sp", cli="--sp", modes=_TRAIN,
                                               doc="split norm and dropout activations by the TP degree"))
    zero_stage: int = spec(0, integer(0, 3, url="zero", cli="--zero", modes=_TRAIN,
                                      doc="ZeRO stage: shard states (1), gradients (2), weights (3)",
                                      labels=((0, "none (DDP)"), (1, "stage 1: optimizer states"),
                                              (2, "stage 2: + gradients"), (3, "stage 3: + weights"))))
    offload_optimizer: str = spec("none", choice(OFFLOAD, url="ooff", cli="--offload-optimizer", modes=_TRAIN,
                                                 doc="ZeRO-Offload of optimizer states"))
    offload_params: str = spec("none", choice(OFFLOAD, url="poff", cli="--offload-params", modes=_TRAIN,
                                              doc="ZeRO-Infinity offload of parameters"))
    micro_batches: int | None = spec(None, integer(1, 1 << 20, cli="--micro-batches", nullable=True, modes=_TRAIN,
                                                   doc="micro-batches per step in the pipeline (default: "
                                                       "gradient_accumulation, at least the stages)"))
    gradient_accumulation: int = spec(1, integer(1, 1 << 20, url="ga", cli="--grad-accum", modes=_TRAIN,
                                                 doc="micro-batches per optimizer step; gradients stay allocated "
                                                     "across them"))
    recompute: str | None = spec(None, choice(RECOMPUTE, url="rc", cli="--recompute", nullable=True, modes=_TRAIN,
                                              labels=RECOMPUTE_LABELS,
                                              doc="activation recomputation (default: full if "
                                                  "workload.gradient_checkpointing, else none)"))
    recompute_layers: int = spec(1, integer(1, MAX_LAYERS, cli="--recompute-layers", modes=_TRAIN,
                                            doc="full recomputation: layers per checkpointed block"))
    gpus_per_node: int = spec(8, integer(1, 1024, cli="--gpus-per-node", modes=_TRAIN,
                                         doc="GPUs in a node (host memory, TP boundary)"))
    pipeline_layers: tuple | None = spec(None, int_list(1, MAX_LAYERS, cli="--pipeline-layers", max_items=1024,
                                                        nullable=True, modes=_TRAIN,
                                                        doc="uneven split: layers on each stage (chunk), first to last"))
    options: object = field(default=None, compare=True)       # the recipe's options (parallel/recipes.py)

    @property
    def gpus(self) -> int:
        return (self.data_parallel * self.tensor_parallel * self.pipeline_parallel * self.context_parallel
                * self.expert_parallel)

    @property
    def dense_shard_group(self) -> int:
        """Ranks that hold the same dense parameters: they shard its states under ZeRO / FSDP."""
        return self.data_parallel * self.context_parallel * self.expert_parallel

    @property
    def expert_shard_group(self) -> int:
        return self.data_parallel * self.context_parallel


def recompute_mode(par: Parallelism, gradient_checkpointing: bool) -> str:
    if par.recompute is not None:
        return par.recompute
    return "full" if gradient_checkpointing else "none"


def micro_batches(par: Parallelism) -> int:
    """Micro-batches per optimizer step on each pipeline (1F1B needs at least as many as stages
    to fill it; Megatron's num_microbatches)."""
    if par.micro_batches is not None:
        return par.micro_batches
    return max(par.gradient_accumulation, par.pipeline_parallel if par.pipeline_parallel > 1 else 1)


def balanced_split(n_layers: int, chunks: int) -> tuple[int, ...] | None:
    """Layers per pipeline chunk (p x v chunks, first to last) when ``chunks`` does not divide the
    layers; None when it does (the even split). Megatron's --decoder-first-pipeline-num-layers and
    --decoder-last-pipeline-num-layers (megatron/training/arguments.py @d98e8a64): the middle chunks
    hold the same count and the first and last the rest, at most as many, as the Llama 3 paper's
    405B run does (Dubey et al. 2024, section 3.3.2: 126 layers on 16 stages, one layer fewer on
    the first and the last, which hold the embedding and the output layer). Where no such split
    exists the extra layers go to the middle chunks one each (Megatron's
    --pipeline-model-parallel-layout expresses it)."""
    if chunks <= 1 or n_layers % chunks == 0 or chunks > n_layers:
        return None
    if chunks == 2:
        return (n_layers // 2, n_layers - n_layers // 2)
    middle = -(-n_layers // chunks)
    rest = n_layers - middle * (chunks - 2)
    if 2 <= rest <= 2 * middle:
        first = rest // 2
        return (first,) + (middle,) * (chunks - 2) + (rest - first,)
    base, extra = divmod(n_layers, chunks)
    return tuple(base + (1 if 0 < i <= extra else 0) for i in range(chunks))


# torchtitan counts the embedding and the norm + output layer as one layer each when it splits a
# model (pipeline_parallel_first_stage_less_layers = pipeline_parallel_last_stage_less_layers = 1,
# torchtitan/config/job_config.py @4a950ea, lines 377-389).
TORCHTITAN_STAGE_LESS_LAYERS = 1


def torchtitan_split(n_layers: int, chunks: int) -> tuple[int, ...]:
    """torchtitan's generate_llm_fqn_per_model_part (distributed/pipeline_parallel.py @4a950ea,
    lines 236-330): L + 2 effective layers over the stages, the remainder one each to the first
    stages, the embedding taking one of the first stage's and the output one of the last's. For
    Llama 3.1 405B on 8 stages: 15, 16 x 6, 15."""
    if chunks == 1:
        return (n_layers,)
    effective = n_layers + 2 * TORCHTITAN_STAGE_LESS_LAYERS
    base, extra = divmod(effective, chunks)
    counts = [base + (1 if i < extra else 0) for i in range(chunks)]
    counts[0] -= TORCHTITAN_STAGE_LESS_LAYERS
    counts[-1] -= TORCHTITAN_STAGE_LESS_LAYERS
    return tuple(counts)


def chunk_layers(par: Parallelism, n_layers: int) -> tuple[int, ...]:
    """Layers on each of the p x v model chunks in model order: the given split; torchtitan's own
    for recipe fsdp2; else the even one, or Megatron's first/last split (balanced_split) where
    p x v does not divide the layers (DeepSpeed's PipelineModule balances by parameters instead:
    taken to be the same here)."""
    chunks = par.pipeline_parallel * par.virtual_stages
    if par.pipeline_layers is not None:
        return tuple(par.pipeline_layers)
    if par.recipe == "fsdp2" and chunks > 1 and n_layers + 2 * TORCHTITAN_STAGE_LESS_LAYERS >= 2 * chunks:
        return torchtitan_split(n_layers, chunks)
    return balanced_split(n_layers, chunks) or (n_layers // chunks,) * chunks


def stage_layers(par: Parallelism, n_layers: int) -> tuple[int, ...]:
    """Layers on each pipeline stage, first to last. A split lists p x v chunks in model order;
    interleaved chunk j runs on stage j % p (Narayanan et al. 2021, section 2.2)."""
    p = par.pipeline_parallel
    chunks = chunk_layers(par, n_layers)
    return tuple(sum(chunks[j] for j in range(s, len(chunks), p)) for s in range(p))


def validate_layout(par: Parallelism, m, w) -> None:
    """The constraints the frameworks enforce; each error names the field and the constraint.

    ``m`` is the ModelSpec (or None for a model given by its parameter count), ``w`` the workload."""
    validate(par, "parallelism")
    f = "parallelism."
    training = w.mode != "inference"
    if not training:
        if par.gpus > 1 or par.zero_stage or par.recipe != "hf":
            raise InputError("parallelism", "applies to training; for serving several GPUs see workload.mode serve")
        return
    p, v = par.pipeline_parallel, par.virtual_stages
    if v > 1 and p == 1:
        raise InputError(f + "virtual_stages", "interleaved stages need pipeline_parallel > 1")
    if par.micro_batches is not None and par.gradient_accumulation > 1 and par.micro_batches != par.gradient_accumulation:
        raise InputError(f + "micro_batches", "is the number of micro-batches per step: give it or "
                                               "gradient_accumulation, or the same value for both")
    if m is not None:
        _check_model_splits(par, m, w)
    _check_expert_tensor(par, m)
    if par.offload_params != "none" and not (par.recipe in ("deepspeed", "deepspeed-estimator") and par.zero_stage == 3
                                             or par.recipe == "fsdp2"):
        raise InputError(f + "offload_params", "parameter offload needs ZeRO stage 3 (recipe deepspeed or "
                                               "deepspeed-estimator) or recipe fsdp2")
    if par.offload_optimizer != "none" and par.recipe not in ("deepspeed", "deepspeed-estimator", "fsdp2"):
        raise InputError(f + "offload_optimizer", "optimizer offload needs recipe deepspeed, deepspeed-estimator "
                                                  "or fsdp2 (ZeRO-Offload, FSDP2 CPUOffloadPolicy)")
    if par.offload_optimizer != "none" and par.recipe == "deepspeed" and par.zero_stage == 0:
        raise InputError(f + "offload_optimizer", "ZeRO-Offload needs zero_stage 1, 2 or 3")


def _check_expert_tensor(par: Parallelism, m) -> None:
    """Expert tensor parallelism is Megatron's (--expert-tensor-parallel-size): the expert layers
    are laid out as ETP x EP x expert-DP x PP over the same GPUs, so ETP divides the GPUs a
    pipeline stage's expert-parallel group spans besides EP (megatron/core/parallel_state.py
    @d98e8a64, initialize_model_parallel's expert RankGenerator). The other recipes keep every
    expert whole on its expert-parallel rank (ETP 1) and refuse another value by name."""
    etp = par.expert_tensor_parallel
    if etp is None or etp == 1 and par.recipe != "megatron":
        return
    f = "parallelism.expert_tensor_parallel"
    if par.recipe != "megatron":
        raise InputError(f, f"recipe {par.recipe} keeps each expert whole on its expert-parallel rank (ETP 1); "
                            "expert tensor parallelism is modelled for recipe megatron")
    if m is not None and not m.n_experts and etp > 1:
        raise InputError(f, "needs a mixture-of-experts model")
    span = par.data_parallel * par.tensor_parallel * par.context_parallel
    if span % etp:
        raise InputError(f, f"must divide data x tensor x context parallel ({span}): Megatron lays the experts out "
                            f"as ETP x EP x expert-data-parallel over each stage's GPUs; got {etp}")
    if m is not None and m.expert_ffn_size % etp:
        raise InputError(f, f"must divide the experts' MLP width ({m.expert_ffn_size}); got {etp}")


def _check_model_splits(par: Parallelism, m, w) -> None:
    f = "parallelism."
    t, p, v, c, e = (par.tensor_parallel, par.pipeline_parallel, par.virtual_stages, par.context_parallel,
                     par.expert_parallel)
    if m.n_heads % t or m.n_kv_heads % t:
        raise InputError(f + "tensor_parallel", f"must divide the attention heads ({m.n_heads}) and the KV heads "
                                                f"({m.n_kv_heads}); got {t}")
    if m.ffn_size % t or (m.n_shared_experts and m.shared_expert_ffn_size % t):
        raise InputError(f + "tensor_parallel", f"must divide the MLP width ({m.ffn_size}); got {t}")
    if par.pipeline_layers is not None:
        split = par.pipeline_layers
        if len(split) != p * v or sum(split) != m.n_layers:
            raise InputError(f + "pipeline_layers", f"must list {p * v} positive layer counts (one per stage"
                                                    f"{' chunk' if v > 1 else ''}) that add up to {m.n_layers}")
    elif p * v > m.n_layers:
        raise InputError(f + "pipeline_parallel", f"pipeline_parallel x virtual_stages ({p * v}) must be at most "
                                                  f"the {m.n_layers} layers (a layer per model chunk)")
    if e > 1:
        if not m.n_experts:
            raise InputError(f + "expert_parallel", "needs a mixture-of-experts model")
        if m.n_experts % e:
            raise InputError(f + "expert_parallel", f"must divide the {m.n_experts} experts; got {e}")
    if c > 1:
        if w.seq_len % (2 * c):
            raise InputError(f + "context_parallel", f"the sequence ({w.seq_len}) must be divisible by 2 x "
                                                     f"context_parallel ({2 * c}): ring attention splits it into "
                                                     "2 x cp load-balanced chunks")
        if w.attention == "eager":
            raise InputError(f + "context_parallel", "ring attention runs flash / memory-efficient kernels; "
                                                     "set workload.attention to sdpa")
