"""Workspaces of the quantised-matmul kernels transformers runs: persistent buffers allocated when
the model loads, and temporaries of one linear's call. Each term is named with its source
(pins in docs/serving.md; K = in_features, N = out_features, M = rows in the call).

Kernel chosen by default (``quant_kernel: auto``):
- transformers < 5: GPTQ through optimum + AutoGPTQ, whose GPTQConfig defaults to ExLlama v1
  (transformers 4.46 utils/quantization_config.py lines 691, 705); AWQ through AutoAWQ's GEMM kernel;
- transformers >= 5: GPTQ and AWQ through GPTQModel, which picks Marlin first on GPUs that run it
  (gptqmodel marlin.py line 58: priority 90 over ExLlamaV2's 80).
"""

from __future__ import annotations

from .params import linears
from .spec import ModelSpec
from .formats import WeightFormat, quantises
from ..versions import holds

KERNELS = ("auto", "exllama", "exllamav2", "marlin", "gemm", "none")
EXLLAMA_MAX_INPUT = 2048            # AutoGPTQ _const.py EXLLAMA_DEFAULT_MAX_INPUT_LENGTH
EXLLAMAV2_BATCH = 8                 # AutoGPTQ qlinear_exllamav2.py scratch_space_fixed(max_input_len=2048, max_batch_size=8)
SMS = 132                           # streaming multiprocessors of an H100 SXM, for Marlin's per-layer workspace
AWQ_DEQUANT_ROWS = 1024             # AutoAWQ gemm.py: batch x tokens >= 1024 dequantises the weight and runs a GEMM


def default_kernel(fmt: WeightFormat, transformers: tuple) -> str:
    marlin = holds("gptq-marlin-default", transformers)
    if fmt.method in ("gptq", "gptq-int8"):
        return "marlin" if marlin and fmt.symmetric else "exllama"
    if fmt.method == "awq":
        return "marlin" if marlin else "gemm"
    return "none"


def _quantised_shapes(m: ModelSpec, fmt: WeightFormat) -> list[tuple[int, int, int]]:
    """(K, N, how many) of every quantised linear."""
    return [(lin.in_features, lin.out_features, lin.layers * lin.copies) for lin in linears(m)
            if quantises(fmt, lin.group)]


def persistent_workspaces(m: ModelSpec, fmt: WeightFormat, kernel: str) -> dict:
    """Buffers the kernel allocates once per device or per layer when the model loads."""
    shapes = _quantised_shapes(m, fmt)
    if not shapes:
        return {}
    n32 = lambda n: -(-n // 32) * 32     # noqa: E731 - AutoGPTQ pads N to 32 for ExLlama
    if kernel == "exllama":
        # autogptq_post_init (auto_gptq/modeling/_utils.py 413-461): temp_dq fp16 (1, max K x N32), and
        # temp_state fp16 (max_input_len, max(K, N32)) with act-order (else one element).
        out = {"ExLlama temp_dq (largest linear, fp16)": 2 * max(k * n32(n) for k, n, _ in shapes)}
        if fmt.desc_act:
            out["ExLlama temp_state (act-order)"] = 2 * EXLLAMA_MAX_INPUT * max(max(k, n32(n)) for k, n, _ in shapes)
            # q4_matrix.cu 108-109: x_map uint32 [K] per layer, cudaMalloc'd outside the torch allocator
            out["ExLlama x_map per layer (outside the allocator)"] = sum(4 * k * c for k, _, c in shapes)
        return out
    if kernel == "exllamav2":
        # qlinear_exllamav2.py 197-231: one scratch per device, the largest of temp_dq (2KN + 128) and
        # temp_fwd (4 N L B + 128) summed for a layer.
        return {"ExLlamaV2 scratch (largest linear)": max(2 * k * n + 128 + 4 * n * EXLLAMA_MAX_INPUT * EXLLAMAV2_BATCH
                                                          + 128 for k, n, _ in shapes)}
    if kernel == "marlin":
        # gptqmodel utils/marlin.py 308-319: an int32 workspace of max(SMs, 128) per layer.
        return {"Marlin workspace per layer": sum(4 * max(SMS, 128) * c for _, _, c in shapes)}
    return {}


def call_temporaries(m: ModelSpec, fmt: WeightFormat, kernel: str, rows: int, act_bytes: int) -> dict:
    """The largest temporary one quantised linear's call allocates for ``rows`` rows."""
    shapes = _quantised_shapes(m, fmt)
    if not shapes:
        return {}
    k, n = max(((k, n) for k, n, _ in shapes), key=lambda kn: kn[0] * kn[1])
    meth = fmt.method
    if meth in ("gptq", "gptq-int8", "awq") and kernel == "marlin":
        # gptq_marlin.cu 1052-1057: fp32 reduction buffer of SMs x min(ceil(M/16) x 16, 64) x 256.
        out = {"Marlin reduction buffer": 4 * SMS * min(-(-rows // 16) * 16, 64) * 256}
        if fmt.desc_act:
            out["Marlin act-order input permutation"] = act_bytes * rows * k
        return out
    if meth == "awq" and kernel == "gemm" and rows >= AWQ_DEQUANT_ROWS:
        return {"AWQ dequantised weight (fp16, largest linear)": 2 * k * n}
    if meth in ("bnb-nf4", "bnb-4bit") and rows > 1:
        # bitsandbytes autograd/_functions.py 300-320: dequantize_4bit to the weight's dtype, then F.linear;
        # double quantisation rebuilds the fp32 absmax first (functional.py 1050-1064).
        out = {"bitsandbytes dequantised weight (largest linear)": act_bytes * k * n}
        if fmt.double_quant:
            out["bitsandbytes fp32 absmax"] = 4 * -(-k * n // 64)
        return out
    if meth == "bnb-int8":
        # autograd/_functions.py 122-170 (0.49.2): int8 rows, their scales, the int32 product and its
        # dequantised output.
        return {"LLM.int8() int8 input, int32 product and output": rows * k + 4 * rows + 4 * rows * n + 2 * rows * n}
    return {}
