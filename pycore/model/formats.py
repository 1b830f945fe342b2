"""Quantised weight formats of Hugging Face checkpoints, as the serving engines and transformers
store them: bytes of one linear layer from the format's definition (block sizes, scales, zero
points), and which modules stay in 16 bits.

Sources (pinned in docs/serving.md):
- GPTQ: qweight int32 [K*b/32, N], qzeros int32 [K/g, N*b/32], scales fp16 [K/g, N], g_idx int32 [K]
  (GPTQModel nn_modules/qlinear/__init__.py lines 837-865 @f4c327a; AutoGPTQ qlinear_exllama.py 75-104).
  vLLM's gptq_marlin and GPTQModel's Marlin keep qweight and scales and drop qzeros and g_idx for
  symmetric weights without act-order (GPTQModel marlin.py 246-293).
- AWQ (GEMM layout, also Marlin/ExLlama): qweight int32 [K, N/8], qzeros int32 [K/g, N/8], scales fp16
  [K/g, N] (AutoAWQ awq/modules/linear/gemm.py 135-168 @88e4c76).
- fp8: weight e4m3 [N, K] with one fp32 scale per tensor, or per 128x128 block as weight_scale_inv
  (transformers integrations/finegrained_fp8.py 388-430 @5.24.0).
- int8 w8a8 (compressed-tensors, per channel): int8 [N, K] and an fp32 scale per output row.
- bitsandbytes NF4/FP4: ceil(NK/2) bytes, absmax per 64 weights (fp32, or uint8 with an fp32 constant
  per 256 blocks under double quantisation), quant_map and code copies per layer (bitsandbytes
  _ops.py 221-236, functional.py 884-957 @95f9af3); int8: int8 [N, K] + fp32 SCB [N] (nn/modules.py 737-747).
- MXFP4 (gpt-oss): expert weights only, E2M1 pairs packed per byte and one E8M0 scale per 32 values,
  NK/2 + NK/32 (transformers integrations/mxfp4.py 241-243).
- NVFP4 (compressed-tensors nvfp4-pack-quantized): NK/2 packed, an fp8 scale per 16 weights and an fp32
  global scale (compressed_tensors fp4_quantized.py 63-82).
Modules left in 16 bits: embeddings, lm_head, norms and MoE routers for every method here
(transformers quantizers/base.py get_keys_to_not_convert; optimum gptq/utils.py 50-52 skips routers).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError, require_bool, require_choice, require_int, show

# name -> (label, bits shown for the quantised linears, default group size or 0)
FORMATS = {
    "fp8": ("fp8 e4m3, one scale per tensor (vLLM --quantization fp8)", 8, 0),
    "fp8-block": ("fp8 e4m3, fp32 scale per 128x128 block (DeepSeek-V3, Qwen3-FP8)", 8, 128),
    "int8": ("int8 weights, fp32 scale per output channel (w8a8)", 8, 0),
    "gptq": ("GPTQ 4-bit, group 128", 4, 128),
    "gptq-int8": ("GPTQ 8-bit, group 128", 8, 128),
    "awq": ("AWQ 4-bit, group 128", 4, 128),
    "bnb-nf4": ("bitsandbytes NF4 with double quantisation", 4, 64),
    "bnb-4bit": ("bitsandbytes 4-bit (NF4 or FP4), fp32 absmax per 64", 4, 64),
    "bnb-int8": ("bitsandbytes LLM.int8()", 8, 0),
    "mxfp4": ("MXFP4 experts (gpt-oss); the rest 16-bit", 4, 32),
    "nvfp4": ("NVFP4, an fp8 scale per 16 weights", 4, 16),
}
FP8_BLOCK = 128
BNB_BLOCK = 64
BNB_DQ_BLOCK = 256
MXFP4_BLOCK = 32
NVFP4_GROUP = 16


@dataclass(frozen=True)
class WeightFormat:
    """How a checkpoint's linear layers are stored."""

    method: str = "none"          # none or a FORMATS key
    bits: int = 16
    group_size: int = 0           # GPTQ/AWQ groups along K (0: one group per row, like -1 in configs)
    desc_act: bool = False        # GPTQ act-order: g_idx kept (Marlin adds a sort index)
    symmetric: bool = True        # GPTQ sym / AWQ zero_point false
    block: int = 0                # fp8-block: block edge
    double_quant: bool = True     # bitsandbytes 4-bit
    experts_only: bool = False    # only the MoE experts are quantised (MXFP4 in gpt-oss)
    source: str = ""              # where the format was read from
    unconverted: tuple = ()       # modules kept in 16 bits by the config (pycore/model/unconverted.py)

    @property
    def quantised(self) -> bool:
        return self.method != "none"

    def label(self) -> str:
        if not self.quantised:
            return "16-bit"
        base = FORMATS[self.method][0]
        if self.method in ("gptq", "gptq-int8", "awq") and self.group_size != 128:
            base = base.replace("group 128", f"group {self.group_size or 'per channel'}")
        return base


NONE = WeightFormat()


def named_format(name: str, group_size: int | None = None, where: str = "quantization") -> WeightFormat:
    """A format chosen by name (the --quantization of an engine, for a checkpoint without its own
    quantization_config)."""
    if name in (None, "none"):
        return NONE
    label, bits, group = FORMATS[name]
    if group_size is not None:
        if name not in ("gptq", "gptq-int8", "awq"):
            raise InputError(where.rsplit(".", 1)[0] + ".quant_group_size",
                             f"applies to GPTQ and AWQ; {name} has a fixed layout")
        group = group_size
    return WeightFormat(method=name, bits=bits, group_size=group, block=FP8_BLOCK if name == "fp8-block" else 0,
                        experts_only=name == "mxfp4", symmetric=name != "awq", double_quant=name != "bnb-4bit",
                        source=f"chosen: {name}")


def linear_bytes(fmt: WeightFormat, k: int, n: int, bias: bool, dtype_bytes: int, marlin: bool = True) -> int:
    """Stored bytes of one [n, k] linear (weight, scales, zeros, bias) in ``fmt``. ``marlin``: the
    engine repacks GPTQ/AWQ for the Marlin kernel (vLLM on compute capability >= 8.0)."""
    b = n * dtype_bytes if bias else 0
    m = fmt.method
    if m == "none":
        return n * k * dtype_bytes + b
    if m == "fp8":
        return n * k + 4 + b
    if m == "fp8-block":
        blk = fmt.block or FP8_BLOCK
        return n * k + 4 * -(-n // blk) * -(-k // blk) + b
    if m == "int8":
        return n * k + 4 * n + b
    if m in ("gptq", "gptq-int8"):
        g = fmt.group_size or k
        groups = -(-k // g)
        out = 4 * -(-k * fmt.bits // 32) * n + 2 * groups * n
        if not marlin or not fmt.symmetric:
            out += 4 * groups * -(-n * fmt.bits // 32)                   # qzeros
        if not marlin or fmt.desc_act:
            out += 4 * k                                                  # g_idx
        if marlin and fmt.desc_act:
            out += 4 * k                                                  # Marlin's g_idx_sort_indices
        return out + b
    if m == "awq":
        g = fmt.group_size or k
        groups = -(-k // g)
        return k * n // 2 + 4 * groups * -(-n // 8) + 2 * groups * n + b
    if m in ("bnb-nf4", "bnb-4bit"):
        absmax = -(-n * k // BNB_BLOCK)
        consts = absmax + 4 * -(-absmax // BNB_DQ_BLOCK) + 1024 + 4 if fmt.double_quant else 4 * absmax
        return -(-n * k // 2) + 64 + consts + b
    if m == "bnb-int8":
        return n * k + 4 * n + b
    if m == "mxfp4":
        return n * k // 2 + -(-n * k // MXFP4_BLOCK) + b
    if m == "nvfp4":
        return n * k // 2 + -(-n * k // NVFP4_GROUP) + 4 + b
    raise AssertionError(m)


def quantises(fmt: WeightFormat, group: str) -> bool:
    """Whether ``fmt`` quantises a linear of this group (params.Linear.group)."""
    if not fmt.quantised or group in ("router", "head"):
        return False
    return group == "experts" if fmt.experts_only else True


# ---- quantization_config of a config.json ----------------------------------------------------

def read_quantization(cfg: dict | None, where: str = "hf_config") -> WeightFormat:
    """The format a config.json's ``quantization_config`` declares (none when absent)."""
    if not isinstance(cfg, dict) or cfg.get("quantization_config") is None:
        return NONE
    qc = cfg["quantization_config"]
    at = where + ".quantization_config"
    if not isinstance(qc, dict):
        raise InputError(at, "must be a JSON object")
    method = qc.get("quant_method")
    known = ("fp8", "gptq", "awq", "bitsandbytes", "mxfp4", "compressed-tensors")
    method = require_choice(at + ".quant_method", method, known)
    src = f"config.json quantization_config ({method})"
    if method == "fp8":
        from .unconverted import read_entries
        key = "ignored_layers" if qc.get("ignored_layers") else "modules_to_not_convert"
        kept = read_entries(qc.get(key), f"{at}.{key}")
        block = qc.get("weight_block_size")
        if block is None:
            return WeightFormat("fp8", 8, source=src, unconverted=kept)
        if not (isinstance(block, list) and len(block) == 2):
            raise InputError(at + ".weight_block_size", f"must be a list of two integers, got {show(block)}")
        edge = require_int(at + ".weight_block_size[0]", block[0], minimum=1, maximum=65536)
        require_int(at + ".weight_block_size[1]", block[1], minimum=1, maximum=65536)
        return WeightFormat("fp8-block", 8, block=edge, source=src, unconverted=kept)
    if method in ("gptq", "awq"):
        bits = require_choice(at + ".bits", qc.get("bits", 4), (2, 3, 4, 8))
        group = qc.get("group_size", 128)
        group = 0 if group == -1 else require_int(at + ".group_size", group, minimum=1, maximum=1 << 20)
        if method == "awq":
            zero = require_bool(at + ".zero_point", qc.get("zero_point", True))
            return WeightFormat("awq", bits, group, symmetric=not zero, source=src)
        return WeightFormat("gptq" if bits != 8 else "gptq-int8", bits, group,
                            desc_act=require_bool(at + ".desc_act", qc.get("desc_act", False)),
                            symmetric=require_bool(at + ".sym", qc.get("sym", True)), source=src)
    if method == "bitsandbytes":
        if require_bool(at + ".load_in_8bit", qc.get("load_in_8bit", False)):
            return WeightFormat("bnb-int8", 8, source=src)
        dq = require_bool(at + ".bnb_4bit_use_double_quant", qc.get("bnb_4bit_use_double_quant", False))
        return WeightFormat("bnb-nf4" if dq else "bnb-4bit", 4, 64, double_quant=dq, source=src)
    if method == "mxfp4":
        return WeightFormat("mxfp4", 4, 32, experts_only=True, source=src)
    return _compressed_tensors(qc, at, src)


def _compressed_tensors(qc: dict, at: str, src: str) -> WeightFormat:
    groups = qc.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        raise InputError(at + ".config_groups", "must be an object with at least one group")
    name, first = next(iter(groups.items()))
    w = first.get("weights") if isinstance(first, dict) else None
    if not isinstance(w, dict):
        raise InputError(f"{at}.config_groups.{name}.weights", "must be an object")
    wat = f"{at}.config_groups.{name}.weights"
    bits = require_choice(wat + ".num_bits", w.get("num_bits"), (4, 8))
    kind = require_choice(wat + ".type", w.get("type", "int"), ("int", "float"))
    if kind == "float":
        from .unconverted import read_entries
        return WeightFormat("fp8" if bits == 8 else "nvfp4", bits, 0 if bits == 8 else NVFP4_GROUP, source=src,
                            unconverted=read_entries(qc.get("ignore"), at + ".ignore"))
    if bits == 8:
        return WeightFormat("int8", 8, source=src)
    group = w.get("group_size") or 0
    group = require_int(wat + ".group_size", group, minimum=0, maximum=1 << 20)
    return WeightFormat("gptq", 4, group, symmetric=require_bool(wat + ".symmetric", w.get("symmetric", True)),
                        source=src)
