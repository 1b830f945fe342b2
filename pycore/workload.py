"""What is run: workload, precision, optimizer, framework assumptions and hardware."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError, MAX_TOKENS, require_bool, require_choice, require_int, require_number
from .units import GiB

MODES = ("full", "lora", "qlora", "inference")
TRAIN_WEIGHT_DTYPES = ("fp32", "bf16", "fp16")
INFERENCE_WEIGHT_DTYPES = ("fp32", "bf16", "fp16", "fp8", "int8", "int4")
AUTOCAST_DTYPES = ("bf16", "fp16")
KV_CACHE_DTYPES = ("fp32", "bf16", "fp16", "fp8", "int8")
OPTIMIZERS = ("sgd", "sgd_momentum", "adamw", "adamw_fused", "adafactor", "adamw_8bit", "lion")
ATTENTIONS = ("sdpa", "flash", "eager")
# Which kernel SDPA picks. "auto" follows torch's own choice (sdp_utils.cpp): flash for 16-bit
# inputs, memory-efficient for fp32, and the math path where neither applies.
SDPA_KERNELS = ("auto", "flash", "efficient", "math")


@dataclass(frozen=True)
class Precision:
    """Weights' storage dtype and, for mixed precision, the autocast compute dtype."""

    weights: str = "bf16"
    autocast: str | None = None
    kv_cache: str | None = None          # None: the compute dtype

    def compute(self) -> str:
        return self.autocast or self.weights


@dataclass(frozen=True)
class Workload:
    mode: str = "full"
    batch_size: int = 1
    seq_len: int = 2048
    new_tokens: int = 0
    optimizer: str = "adamw"
    attention: str = "sdpa"
    gradient_checkpointing: bool = False
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_targets: tuple | str | None = None     # None: the family's attention projections
    qlora_double_quant: bool = True


@dataclass(frozen=True)
class Framework:
    """The software stack's behaviour. Defaults: PyTorch 2.11, transformers 5.17, peft 0.21."""

    torch: str = "2.11"
    transformers: str = "5.17"
    peft: str = "0.21"
    sdpa_kernel: str = "auto"
    # transformers' ForCausalLMLoss upcasts logits with logits.float() (loss/loss_utils.py).
    loss_upcast_fp32: bool = True
    # peft's get_peft_model(autocast_adapter_dtype=True) keeps 16-bit adapters in fp32.
    lora_adapters_fp32: bool = True
    # nvidia-smi minus torch.cuda.memory_reserved(): 0.73-0.79 GiB in shared/calibration (H100, torch 2.11).
    cuda_context_bytes: int = 820 * 1024 ** 2


@dataclass(frozen=True)
class Hardware:
    name: str
    memory_bytes: int


def validate_workload(w: Workload, p: Precision) -> None:
    """Raise InputError naming the first bad field of the workload or precision."""
    require_choice("workload.mode", w.mode, MODES)
    require_int("workload.batch_size", w.batch_size, maximum=MAX_TOKENS)
    require_int("workload.seq_len", w.seq_len, maximum=MAX_TOKENS)
    if w.batch_size * w.seq_len > MAX_TOKENS:
        raise InputError("workload.seq_len", f"batch_size x seq_len must be at most {MAX_TOKENS}")
    require_int("workload.new_tokens", w.new_tokens, minimum=0, maximum=MAX_TOKENS)
    require_choice("workload.optimizer", w.optimizer, OPTIMIZERS)
    require_choice("workload.attention", w.attention, ATTENTIONS)
    require_bool("workload.gradient_checkpointing", w.gradient_checkpointing)
    require_bool("workload.qlora_double_quant", w.qlora_double_quant)
    if w.mode in ("lora", "qlora"):
        require_int("workload.lora_rank", w.lora_rank, maximum=65536)
        require_number("workload.lora_alpha", w.lora_alpha, minimum=0.0, maximum=1e6)
        if w.lora_targets not in (None, "all-linear"):
            if not isinstance(w.lora_targets, tuple) or not w.lora_targets or \
                    not all(isinstance(t, str) and 0 < len(t) <= 64 for t in w.lora_targets):
                raise InputError("workload.lora_targets", "must be 'all-linear' or a non-empty list of module names")
    allowed = INFERENCE_WEIGHT_DTYPES if w.mode == "inference" else TRAIN_WEIGHT_DTYPES
    if w.mode == "qlora":
        allowed = ("bf16", "fp16", "fp32")        # dtype of the non-quantised parts and the compute
    require_choice("precision.weights", p.weights, allowed)
    if p.autocast is not None:
        require_choice("precision.autocast", p.autocast, AUTOCAST_DTYPES)
        if w.mode == "inference":
            raise InputError("precision.autocast", "mixed precision applies to training; for inference "
                                                   "choose the weights' dtype")
        if p.weights != "fp32":
            raise InputError("precision.autocast", "mixed precision keeps fp32 master weights; "
                                                   "set precision.weights to fp32")
    if p.kv_cache is not None:
        require_choice("precision.kv_cache", p.kv_cache, KV_CACHE_DTYPES)


def validate_framework(f: Framework) -> None:
    require_choice("framework.sdpa_kernel", f.sdpa_kernel, SDPA_KERNELS)
    require_bool("framework.loss_upcast_fp32", f.loss_upcast_fp32)
    require_bool("framework.lora_adapters_fp32", f.lora_adapters_fp32)
    require_int("framework.cuda_context_bytes", f.cuda_context_bytes, minimum=0, maximum=64 * GiB)
    for name in ("torch", "transformers", "peft"):
        value = getattr(f, name)
        if not isinstance(value, str) or len(value) > 32:
            raise InputError("framework." + name, "must be a version string")
