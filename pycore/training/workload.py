"""What is run: workload, precision, optimizer, framework assumptions and hardware."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError, MAX_TOKENS
from ..schema import MODES, TRAINING_MODES, choice, flag, integer, names, number, obj, spec, text, validate
from .peft_config import parse_peft_config
from ..model.formats import FORMATS
from ..model.quant_kernels import KERNELS
from ..units import GiB
from ..versions import holds, version_tuple

MODE_LABELS = (("full", "Full training"), ("lora", "LoRA"), ("qlora", "QLoRA (4-bit base)"),
               ("peft", "PEFT adapter (any adapter_config.json)"),
               ("inference", "Inference (transformers)"), ("serve", "Serving (vLLM, SGLang, llama.cpp)"))
# "serve" selects the serving workload (pycore/serving/config.py); the request parser builds a
# Serving object instead of a Workload for it.
REQUEST_MODES = MODES + ("serve",)
OPTIMIZER_LABELS = (("adamw", "AdamW (foreach)"), ("adamw_fused", "AdamW (fused)"),
                    ("adamw_single", "AdamW (foreach=False)"), ("adamw_8bit", "AdamW 8-bit (bitsandbytes)"),
                    ("paged_adamw_8bit", "Paged AdamW 8-bit (bitsandbytes)"), ("adafactor", "Adafactor (torch.optim)"),
                    ("adafactor_hf", "Adafactor (transformers)"), ("lion", "Lion"), ("sgd", "SGD"),
                    ("sgd_momentum", "SGD with momentum"))
TRAIN_WEIGHT_DTYPES = ("fp32", "bf16", "fp16")
INFERENCE_WEIGHT_DTYPES = ("fp32", "bf16", "fp16", "fp8", "int8", "int4")
AUTOCAST_DTYPES = ("bf16", "fp16")
QUANTISED_WEIGHTS = ("fp8", "int8", "int4")     # weight-only: matmuls run in the activations' dtype
ACTIVATION_DTYPES = ("bf16", "fp16")
KV_CACHE_DTYPES = ("fp32", "bf16", "fp16", "fp8", "int8")
OPTIMIZERS = ("sgd", "sgd_momentum", "adamw", "adamw_fused", "adamw_single", "adafactor", "adafactor_hf", "adamw_8bit",
              "paged_adamw_8bit", "lion")
ATTENTIONS = ("sdpa", "flash", "eager")
# Which kernel SDPA picks. "auto" follows torch's own choice (sdp_utils.cpp): flash for 16-bit
# inputs, memory-efficient for fp32, and the math path where neither applies.
SDPA_KERNELS = ("auto", "flash", "efficient", "math")


@dataclass(frozen=True)
class Precision:
    """Weights' storage dtype and, for mixed precision, the autocast compute dtype."""

    weights: str = spec("bf16", choice(INFERENCE_WEIGHT_DTYPES, url="w", cli="--weights",
                                       doc="storage dtype of the weights"))
    autocast: str | None = spec(None, choice(AUTOCAST_DTYPES, url="amp", cli="--autocast", nullable=True,
                                             modes=("full", "lora"),
                                             doc="mixed precision: torch.autocast dtype over fp32 weights",
                                             labels=(("", "off"), ("bf16", "autocast bf16 (fp32 weights)"),
                                                     ("fp16", "autocast fp16 (fp32 weights)"))))
    kv_cache: str | None = spec(None, choice(KV_CACHE_DTYPES, url="kv", cli="--kv-cache", nullable=True,
                                             modes=("inference",),
                                             doc="KV cache dtype (default: the compute dtype)"))
    activations: str | None = spec(None, choice(ACTIVATION_DTYPES, url="act", cli="--activations", nullable=True,
                                                modes=("inference",),
                                                doc="weight-only quantised inference: the activations' dtype "
                                                    "(torch_dtype when loading; default bf16)"))
    quant_format: str | None = spec(None, choice(tuple(FORMATS), url="qf", cli="--quant-format", nullable=True,
                                                 modes=("inference",),
                                                 labels=tuple((k, v[0]) for k, v in FORMATS.items()),
                                                 doc="quantised inference: the checkpoint's format, stored exactly "
                                                     "and with its kernel's workspaces (instead of the bits "
                                                     "of precision.weights)"))
    quant_kernel: str = spec("auto", choice(KERNELS, url="qk", cli="--quant-kernel", modes=("inference",),
                                            doc="GPTQ/AWQ kernel (auto: ExLlama v1 / AWQ GEMM before "
                                                "transformers 5, Marlin from 5)"))

    def compute(self) -> str:
        if self.weights in QUANTISED_WEIGHTS:
            return self.activations or "bf16"
        return self.autocast or self.weights


# Mixed precision (torch.autocast) keeps fp32 master weights: a request that sets precision.autocast and
# leaves out precision.weights stores its weights in fp32. Written once here for the parser, the links,
# the command line and the page (request_schema()["implied"]).
AUTOCAST_WEIGHTS = "fp32"


def implied_precision(raw) -> dict:
    """The precision fields another given field sets when the request leaves them out."""
    if isinstance(raw, dict) and raw.get("autocast") is not None and "weights" not in raw:
        return {"weights": AUTOCAST_WEIGHTS}
    return {}


# The precision.weights class of each exact format (their bits per weight before scales).
QUANT_FORMAT_WEIGHTS = {"fp8": "fp8", "fp8-block": "fp8", "int8": "int8", "gptq-int8": "int8", "bnb-int8": "int8",
                        "gptq": "int4", "awq": "int4", "bnb-nf4": "int4", "bnb-4bit": "int4",
                        "mxfp4": "int4", "nvfp4": "int4"}


@dataclass(frozen=True)
class Workload:
    mode: str = spec("full", choice(REQUEST_MODES, url="mode", cli="--mode", labels=MODE_LABELS))
    batch_size: int = spec(1, integer(1, MAX_TOKENS, url="batch", cli="--batch",
                                      doc="micro-batch (sequences per step per GPU)"))
    seq_len: int = spec(2048, integer(1, MAX_TOKENS, url="seq", cli="--seq",
                                      doc="tokens per sequence (the prompt, for inference)", unit="tokens"))
    new_tokens: int = spec(0, integer(0, MAX_TOKENS, url="new", cli="--new-tokens", modes=("inference",),
                                      doc="inference: tokens generated (0 = one forward pass)"))
    optimizer: str = spec("adamw", choice(OPTIMIZERS, url="opt", cli="--optimizer", modes=TRAINING_MODES,
                                          labels=OPTIMIZER_LABELS))
    attention: str = spec("sdpa", choice(ATTENTIONS, url="attn", cli="--attention",
                                         labels=(("sdpa", "SDPA / flash"), ("flash", "flash-attention 2"),
                                                             ("eager", "eager (keeps s×s scores)"))))
    gradient_checkpointing: bool = spec(False, flag(url="ckpt", cli="--checkpointing", modes=TRAINING_MODES,
                                                    doc="recompute each layer in backward"))
    lora_rank: int = spec(16, integer(1, 65536, url="rank", cli="--lora-rank", path="lora.rank",
                                      modes=("lora", "qlora")))
    lora_alpha: float = spec(32, number(0.0, 1e6, cli="--lora-alpha", path="lora.alpha", modes=("lora", "qlora")))
    lora_targets: tuple | str | None = spec(None, names(("all-linear",), url="targets", cli="--lora-targets",
                                                        path="lora.targets", nullable=True,
                                                        modes=("lora", "qlora"),
                                                        doc="module names, or all-linear (default: attention projections)"))
    # mode "peft": any PEFT adapter config (adapter_config.json), read by its peft_type
    # (pycore/training/peft_config.py, adapters.py)
    peft_config: object = spec(None, obj(parse_peft_config, url="peft", cli="--peft-config", nullable=True,
                                         modes=("peft",),
                                         doc="a PEFT adapter_config.json (any peft_type of peft 0.21)"))
    peft_nf4_base: bool = spec(False, flag(url="nf4", cli="--peft-nf4-base", modes=("peft",),
                                           doc="the adapter over a bitsandbytes NF4 base "
                                                                 "(load_in_4bit, as QLoRA)"))
    # Memory levers of training (pycore/training/kernels.py, offload.py; docs/methods.md)
    loss_kernel: str = spec("default", choice(("default", "liger-flce", "cut-cross-entropy", "torchtune-chunked",
                                                "flash-attn-ce"), url="loss", cli="--loss-kernel", modes=TRAINING_MODES,
                                               doc="the loss: transformers' (fp32 logits), Liger's fused linear "
                                                   "cross-entropy, Cut Cross-Entropy, torchtune's chunked "
                                                   "cross-entropy or flash-attention's Triton cross-entropy"))
    liger_kernels: bool = spec(False, flag(url="liger", cli="--liger-kernels", modes=TRAINING_MODES,
                                           doc="Liger RMSNorm, SwiGLU and RoPE"))
    torch_compile: bool = spec(False, flag(url="compile", cli="--compile", modes=TRAINING_MODES,
                                           doc="torch.compile (Inductor) of the model; "
                                                                     "unverified on a GPU"))
    activation_offload: str = spec("none", choice(("none", "torchtune", "unsloth", "deepspeed-cpu"),
                                                  url="aoff", cli="--activation-offload", modes=TRAINING_MODES,
                                                  doc="saved activations to pinned host memory (torchtune), or the "
                                                      "checkpointed layer inputs (Unsloth, DeepSpeed cpu_checkpointing)"))
    packing: str = spec("none", choice(("none", "flash-varlen", "sdpa-mask"), url="pack", cli="--packing",
                                       modes=TRAINING_MODES,
                                       doc="packed sequences: flash-attention varlen (no mask) or SDPA with a "
                                           "block-diagonal b x s x s mask"))
    qlora_double_quant: bool = spec(True, flag(modes=("qlora",), doc="QLoRA: quantise the NF4 constants too"))
    head: str = spec("auto", choice(("auto", "causal-lm", "masked-lm", "sequence-classification", "token-classification",
                                      "reward"), url="head", cli="--head", modes=MODES,
                                     labels=(("auto", "the model's language-modelling head"),
                                             ("causal-lm", "causal LM (next token)"), ("masked-lm", "masked LM"),
                                             ("sequence-classification", "sequence classification"),
                                             ("token-classification", "token classification"),
                                             ("reward", "reward model (one score)")),
                                     doc="the model's head (AutoModelFor... class)"))
    num_labels: int = spec(2, integer(1, 1_000_000, url="labels", cli="--num-labels", modes=MODES,
                                      doc="classification heads: outputs"))
    # Multimodal models (pycore/training/vision.py): images per sequence, each images x tokens_per_image
    # more tokens, at a size in pixels (default: the processor's own, model/image_tokens.py)
    images_per_sample: int = spec(0, integer(0, 4096, url="img", cli="--images", modes=MODES,
                                             doc="images in each sequence (a multimodal model's vision encoder "
                                                 "runs on them)"))
    image_height: int | None = spec(None, integer(1, 1 << 16, nullable=True, url="imgh", cli="--image-height",
                                                  modes=MODES, unit="pixels",
                                                  doc="image height (default: the processor's size)"))
    image_width: int | None = spec(None, integer(1, 1 << 16, nullable=True, url="imgw", cli="--image-width",
                                                 modes=MODES, unit="pixels",
                                                 doc="image width (default: the processor's size)"))
    cache_implementation: str = spec("dynamic", choice(("dynamic", "static"), url="cache",
                                                       cli="--cache-implementation", modes=("inference",),
                                                       doc="generate's KV cache: grown by torch.cat each step "
                                                           "(DynamicCache) or allocated for the whole length at "
                                                           "the first step (StaticCache)"))


# Memory outside the caching allocator (CUDA context, loaded kernels, cuBLAS handles), by whether torch
# loads CUDA modules lazily (rule cuda-lazy-module-loading):
# - lazy (torch >= 1.13): 820 MiB, nvidia-smi minus memory_reserved() at the end of the shared/calibration
#   runs (0.73-0.79 GiB, H100, torch 2.11), with a little margin;
# - eager: 1,343 MiB, the transformers guide's measurement after torch.ones((1, 1)).to("cuda")
#   (docs/source/en/model_memory_anatomy.md; torch 1.x, CUDA 11).
CUDA_CONTEXT_BYTES = {"lazy": 820 * 1024 ** 2, "eager": 1343 * 1024 ** 2}


@dataclass(frozen=True)
class Framework:
    """The software stack's behaviour. Defaults: PyTorch 2.11, transformers 5.17, peft 0.21."""

    torch: str = spec("2.11", text(32, url="torch", cli="--torch-version"))
    transformers: str = spec("5.17", text(32, url="tf", cli="--transformers-version"))
    peft: str = spec("0.21", text(32, cli="--peft-version"))
    sdpa_kernel: str = spec("auto", choice(SDPA_KERNELS))
    # transformers' ForCausalLMLoss upcasts logits with logits.float() (loss/loss_utils.py).
    loss_upcast_fp32: bool = spec(True, flag())
    # peft's get_peft_model(autocast_adapter_dtype=True) keeps 16-bit adapters in fp32.
    lora_adapters_fp32: bool = spec(True, flag())
    # nvidia-smi minus torch.cuda.memory_reserved(); unset: by the torch version (CUDA_CONTEXT_BYTES).
    cuda_context_bytes: int | None = spec(None, integer(0, 64 * GiB, nullable=True, unit="bytes",
                                                        doc="memory outside the allocator (default: by torch version)"))
    # optimizer.zero_grad(set_to_none=...); unset: torch's default, True from 2.0 (rule zero-grad-keeps-gradients).
    zero_grad_set_to_none: bool | None = spec(None, flag(nullable=True, modes=TRAINING_MODES,
                                                         doc="free gradients after the step (default: torch's)"))

    # PYTORCH_CUDA_ALLOC_CONF, as torch reads it: the caching allocator's replay follows it (training/caching.py).
    alloc_conf: str = spec("", text(200, cli="--alloc-conf",
                                    doc="PYTORCH_CUDA_ALLOC_CONF, e.g. expandable_segments:True"))

    def context_bytes(self) -> int:
        """The CUDA context and everything else outside torch's allocator, as nvidia-smi counts it."""
        if self.cuda_context_bytes is not None:
            return self.cuda_context_bytes
        lazy = holds("cuda-lazy-module-loading", version_tuple(self.torch, "framework.torch", "a torch version", "2.11"))
        return CUDA_CONTEXT_BYTES["lazy" if lazy else "eager"]

    def keeps_gradients(self) -> bool:
        """Whether gradients stay allocated from one step to the next (zero_grad zeroes them)."""
        if self.zero_grad_set_to_none is not None:
            return not self.zero_grad_set_to_none
        return holds("zero-grad-keeps-gradients", version_tuple(self.torch, "framework.torch", "a torch version", "2.11"))


@dataclass(frozen=True)
class Hardware:
    name: str
    memory_bytes: int


def nf4_base(w: Workload) -> bool:
    """The base weights are bitsandbytes NF4: QLoRA, or a PEFT adapter over a 4-bit base."""
    return w.mode == "qlora" or (w.mode == "peft" and w.peft_nf4_base)


def weight_dtypes(mode: str) -> tuple:
    """The weights' dtypes a mode accepts."""
    if mode == "inference":
        return INFERENCE_WEIGHT_DTYPES
    if mode == "qlora":
        return ("bf16", "fp16", "fp32")         # dtype of the non-quantised parts and the compute
    return TRAIN_WEIGHT_DTYPES


def validate_workload(w: Workload, p: Precision) -> None:
    """Raise InputError naming the first bad field of the workload or precision (request paths)."""
    validate(w, "workload")
    if w.mode not in MODES:
        raise InputError("workload.mode", "serve is a serving workload; estimate it with the serving engines")
    validate(p, "precision")
    if w.peft_nf4_base and w.mode != "peft":
        raise InputError("workload.peft_nf4_base", "applies to mode peft (mode qlora is LoRA over NF4)")
    if (w.mode == "peft") != (w.peft_config is not None):
        raise InputError("workload.peft_config", "is required for mode peft" if w.mode == "peft" else
                         "applies to mode peft only (it describes the adapter)")
    if w.activation_offload in ("unsloth", "deepspeed-cpu") and not w.gradient_checkpointing:
        raise InputError("workload.activation_offload", f"{w.activation_offload} offloads the checkpointed layer "
                                                        "inputs: set workload.gradient_checkpointing")
    if w.packing == "flash-varlen" and w.attention != "flash":
        raise InputError("workload.packing", "flash-varlen packing needs workload.attention flash (position_ids "
                                             "select flash_attn_varlen_func); with SDPA choose sdpa-mask")
    if w.batch_size * w.seq_len > MAX_TOKENS:
        raise InputError("workload.seq_len", f"batch_size x seq_len must be at most {MAX_TOKENS}")
    allowed = weight_dtypes(w.mode)
    if p.weights not in allowed:
        raise InputError("precision.weights", f"{p.weights} applies to inference only; for {w.mode} choose one of "
                                              + ", ".join(allowed))
    if p.quant_format is not None:
        if w.mode != "inference":
            raise InputError("precision.quant_format", "applies to inference; QLoRA's base is NF4 already")
        want = QUANT_FORMAT_WEIGHTS[p.quant_format]
        if p.weights != want:
            raise InputError("precision.weights", f"must be {want} for the {p.quant_format} format, got {p.weights}")
    if p.activations is not None and p.weights not in QUANTISED_WEIGHTS:
        raise InputError("precision.activations", "applies to weight-only quantised inference (weights fp8, int8 "
                                                  "or int4); otherwise the activations take the weights' dtype")
    if p.autocast is not None:
        if w.mode == "inference":
            raise InputError("precision.autocast", "mixed precision applies to training; for inference "
                                                   "choose the weights' dtype")
        if p.weights != AUTOCAST_WEIGHTS:
            raise InputError("precision.autocast", f"mixed precision keeps {AUTOCAST_WEIGHTS} master weights; "
                                                   f"set precision.weights to {AUTOCAST_WEIGHTS} or leave it out")


def validate_framework(f: Framework) -> None:
    validate(f, "framework")
    from .caching import parse_alloc_conf
    parse_alloc_conf(f.alloc_conf)
