"""GGUF files: ggml tensor types, the tensors a model's file holds, and the type llama-quantize gives
each tensor under a preset (Q4_K_M keeps some tensors at Q6_K). From these, a file's size and bits
per weight follow exactly.

Sources, llama.cpp ec98e2002 (Dec 2025, as vendored in ollama f63eea3d at llama/llama.cpp):
- type block sizes and bytes: ggml/src/ggml.c line 612 (type_traits) and the static_asserts of
  ggml/src/ggml-common.h (lines 170-430); a row of ne0 elements takes ne0 / block * bytes (ggml.c 1278);
- which tensors are quantised: src/llama-quant.cpp lines 812-868 (names ending in "weight", 2-D or
  more, not norms, not the MoE router ffn_gate_inp, not position embeddings);
- the per-tensor type of each preset: llama_tensor_get_type, src/llama-quant.cpp lines 178-474, and the
  default type per preset, lines 537-576;
- the "file size = X GiB (Y BPW)" line: src/llama-model-loader.cpp lines 1163-1167, over every tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..errors import InputError
from ..model.params import layer_norm_params, linear_attention_other_params, linears
from ..model.spec import ModelSpec, is_mla, is_moe_layer, norm_params_per_unit
from .kv import linear_flags

QK_K = 256
# ggml type -> (elements per block, bytes per block)
TYPES = {
    "f32": (1, 4), "f16": (1, 2), "bf16": (1, 2),
    "q4_0": (32, 18), "q4_1": (32, 20), "q5_0": (32, 22), "q5_1": (32, 24), "q8_0": (32, 34), "q8_1": (32, 36),
    "q2_K": (QK_K, 84), "q3_K": (QK_K, 110), "q4_K": (QK_K, 144), "q5_K": (QK_K, 176), "q6_K": (QK_K, 210),
    "q8_K": (QK_K, 292),
    "iq1_s": (QK_K, 50), "iq1_m": (QK_K, 56), "iq2_xxs": (QK_K, 66), "iq2_xs": (QK_K, 74), "iq2_s": (QK_K, 82),
    "iq3_xxs": (QK_K, 98), "iq3_s": (QK_K, 110), "iq4_nl": (32, 18), "iq4_xs": (QK_K, 136),
    "tq1_0": (QK_K, 54), "tq2_0": (QK_K, 66), "mxfp4": (32, 17),
}
# llama-quantize preset -> default type of its quantised tensors (llama-quant.cpp 537-576)
PRESET_DEFAULT = {
    "Q4_0": "q4_0", "Q4_1": "q4_1", "Q5_0": "q5_0", "Q5_1": "q5_1", "Q8_0": "q8_0", "F16": "f16", "BF16": "bf16",
    "F32": "f32", "MXFP4_MOE": "mxfp4",
    "Q2_K_S": "q2_K", "Q2_K": "q2_K", "Q3_K_S": "q3_K", "Q3_K_M": "q3_K", "Q3_K_L": "q3_K",
    "Q4_K_S": "q4_K", "Q4_K_M": "q4_K", "Q5_K_S": "q5_K", "Q5_K_M": "q5_K", "Q6_K": "q6_K",
    "IQ1_S": "iq1_s", "IQ1_M": "iq1_m", "IQ2_XXS": "iq2_xxs", "IQ2_XS": "iq2_xs", "IQ2_S": "iq2_xs", "IQ2_M": "iq2_s",
    "IQ3_XXS": "iq3_xxs", "IQ3_XS": "iq3_s", "IQ3_S": "iq3_s", "IQ3_M": "iq3_s", "IQ4_NL": "iq4_nl",
    "IQ4_XS": "iq4_xs", "TQ1_0": "tq1_0", "TQ2_0": "tq2_0",
}
PRESETS = tuple(PRESET_DEFAULT)
# The KV cache types llama.cpp accepts for -ctk / -ctv (common/arg.cpp kv_cache_types).
CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
# Presets quantised with an importance matrix, as published files are: llama-quantize refuses the
# IQ1/IQ2 types without one (tools/quantize/quantize.cpp), and the README's IQ3_XXS row (3.2548 bpw
# for Llama-3.1-8B) is reproduced only with the imatrix branch of the ffn_down rule.
_NEED_IMATRIX = frozenset({"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS"})
_IQ_LOW = frozenset({"IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"})
_FALLBACK = {"tq1_0": "q4_0", "tq2_0": "q4_0", "q4_K": "q5_0", "q5_K": "q5_1", "q6_K": "q8_0",
             **{t: "iq4_nl" for t in ("iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq1_s", "iq1_m", "q2_K",
                                      "q3_K", "iq4_xs")}}


def row_bytes(t: str, ne0: int) -> int:
    block, size = TYPES[t]
    if ne0 % block:
        raise ValueError(f"{ne0} elements do not fill {t} blocks of {block}")
    return ne0 // block * size


@dataclass(frozen=True)
class Tensor:
    name: str            # GGUF name without the "blk.N." prefix
    layer: int           # -1 outside the blocks
    ne0: int             # row length (in_features)
    rows: int            # out_features x experts
    experts: int = 1     # ne2 of 3-D expert tensors

    @property
    def elements(self) -> int:
        return self.ne0 * self.rows


# transformers module name -> GGUF tensor base name (llama.cpp gguf-py/gguf/tensor_mapping.py)
_GGUF_NAMES = {
    "q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output", "qkv_proj": "attn_qkv",
    "c_attn": "attn_qkv", "query_key_value": "attn_qkv", "gate_proj": "ffn_gate", "up_proj": "ffn_up",
    "down_proj": "ffn_down", "gate_up_proj": "ffn_up", "c_fc": "ffn_up", "dense_h_to_4h": "ffn_up",
    "dense_4h_to_h": "ffn_down", "gate": "ffn_gate_inp", "shared_expert_gate": "ffn_gate_inp_shexp",
    "q_a_proj": "attn_q_a", "q_b_proj": "attn_q_b", "kv_a_proj_with_mqa": "attn_kv_a_mqa", "kv_b_proj": "attn_kv_b",
    # Qwen3-Next's Gated DeltaNet (llama.cpp LLM_ARCH_QWEN3NEXT: ssm_in, ssm_ba, ssm_out)
    "in_proj_qkvz": "ssm_in", "in_proj_ba": "ssm_ba", "out_proj": "ssm_out",
}
_LINEAR_ATTENTION = ("in_proj_qkvz", "in_proj_ba", "out_proj")


def _gguf_name(lin) -> str:
    if lin.name == "c_proj" or lin.name == "dense":
        return "attn_output" if lin.group == "attention" else "ffn_down"
    base = _GGUF_NAMES[lin.name]
    return base + "_shexp" if lin.group == "shared" and base.startswith("ffn_") else base


@lru_cache(maxsize=128)
def model_tensors(m: ModelSpec) -> tuple[Tensor, ...]:
    """Every tensor of the model's GGUF file, in file order."""
    if m.family == "bert":
        raise InputError("model", "llama.cpp serves decoder models; BERT is an encoder")
    h, L = m.hidden_size, m.n_layers
    out = [Tensor("token_embd.weight", -1, h, m.vocab_size)]
    if m.learned_positions:
        out.append(Tensor("position_embd.weight", -1, h, m.max_positions))
    sinks = m.n_heads if m.attention_sinks else 0
    all_lins = [lin for lin in linears(m) if lin.group != "head"]
    linear_layer = linear_flags(m)
    # A Gated DeltaNet layer's small tensors: conv1d, dt bias, A, and the gated norm (ssm_conv1d, ssm_dt,
    # ssm_a, ssm_norm); the attention layers' q/k norms are on those layers only.
    linear_1d = linear_attention_other_params(m) // m.linear_attn_layers if m.linear_attn_layers else 0
    for i in range(L):
        moe = is_moe_layer(m, i)
        # a layer's own attention: Gated DeltaNet's projections on linear layers, q/k/v/o on the others
        lins = [lin for lin in all_lins
                if lin.group != "attention" or (lin.name in _LINEAR_ATTENTION) == linear_layer[i]]
        one_d = layer_norm_params(m, attention=not linear_layer[i]) + sinks + (linear_1d if linear_layer[i] else 0)
        out.append(Tensor("norms and biases (f32)", i, one_d + _bias_elements(lins, moe), 1))
        for lin in lins:
            in_moe = lin.group in ("experts", "router", "shared")
            if in_moe != moe and lin.group != "attention":
                continue
            if lin.name == "experts.gate_up_proj":
                f = lin.out_features // 2
                out += [Tensor("ffn_gate_exps.weight", i, lin.in_features, f * lin.copies, lin.copies),
                        Tensor("ffn_up_exps.weight", i, lin.in_features, f * lin.copies, lin.copies)]
            elif lin.name == "experts.down_proj":
                out.append(Tensor("ffn_down_exps.weight", i, lin.in_features, lin.out_features * lin.copies,
                                  lin.copies))
            else:
                out.append(Tensor(_gguf_name(lin) + ".weight", i, lin.in_features, lin.out_features))
    out.append(Tensor("output_norm (f32)", -1, norm_params_per_unit(m) * h, 1))
    if not m.tied_embeddings:
        out.append(Tensor("output.weight", -1, h, m.vocab_size))
    return tuple(out)


def _bias_elements(lins, moe: bool) -> int:
    n = 0
    for lin in lins:
        in_moe = lin.group in ("experts", "router", "shared")
        if lin.bias and (lin.group == "attention" or in_moe == moe):
            n += lin.out_features * lin.copies
    return n


def _is_1d(t: Tensor) -> bool:
    return t.rows == 1


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


@lru_cache(maxsize=256)
def tensor_types(m: ModelSpec, preset: str) -> tuple[str, ...]:
    """The ggml type of each tensor of ``model_tensors(m)`` in a ``preset`` file."""
    default = PRESET_DEFAULT[preset]
    tensors = model_tensors(m)
    if default in ("f32", "f16", "bf16"):
        return tuple("f32" if _is_1d(t) or t.name.startswith("ffn_gate_inp") else default for t in tensors)
    imatrix = preset in _NEED_IMATRIX
    n_layer = m.n_layers
    n_gqa = 1 if is_mla(m) else m.n_heads // m.n_kv_heads
    n_expert = m.n_experts
    has_output = not m.tied_embeddings
    n_attention_wv = sum(1 for t in tensors if t.name in ("attn_v.weight", "attn_qkv.weight", "attn_kv_b.weight"))
    seven_b = m.model_type in ("llama", "") and n_layer == 80          # llama.cpp LLM_TYPE_70B
    iv = 0
    counters = {"ffn_down": 0, "ffn_gate": 0, "ffn_up": 0}
    out = []
    for t in tensors:
        if _is_1d(t):
            out.append("f32")
            continue
        name = t.name
        if name.startswith("ffn_gate_inp") or name == "position_embd.weight":
            out.append("f32")                    # the converter writes them F32 and quantize leaves them
            continue
        new = default
        if name == "output.weight" or (not has_output and name == "token_embd.weight"):
            if preset == "MXFP4_MOE":
                new = "q8_0"
            elif t.ne0 % TYPES[default][0]:
                new = "q8_0"
            elif preset in ("IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"):
                new = "q5_K"
            elif new != "q8_0":
                new = "q6_K"
        elif preset == "MXFP4_MOE":
            new = "mxfp4" if t.experts > 1 else "q8_0"
        elif name == "token_embd.weight":
            if preset in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
                new = "q2_K"
            elif preset in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
                new = "iq3_s"
            elif preset in ("TQ1_0", "TQ2_0"):
                new = "q4_K"
        else:
            new, iv = _layer_rule(preset, name, t, default, n_layer, n_gqa, n_expert, imatrix, iv, counters,
                                  n_attention_wv, seven_b)
        if t.ne0 % TYPES[new][0]:
            fb = _FALLBACK.get(new)
            if fb is None:
                raise InputError("model", f"{name} has rows of {t.ne0} elements, which {preset} cannot store")
            new = fb if t.ne0 % TYPES[fb][0] == 0 else "f16"
        out.append(new)
    return tuple(out)


def _layer_rule(ft, name, t, new, n, n_gqa, n_expert, imatrix, iv, counters, n_wv, seventy_b):
    """(type, attn_v counter) for one layer tensor: llama_tensor_get_type's per-tensor branches
    (src/llama-quant.cpp 178-474), in its order: the low-bit IQ presets first, then attn_v (which counts
    the V tensors seen), ffn_down, and the other attention and FFN tensors."""
    base = name.split(".")[0]
    if ft in _IQ_LOW:
        return _iq_low_rule(ft, base, t.layer, new, n, n_gqa, n_expert), iv + (base == "attn_v")
    if base == "attn_v":
        return _attn_v_rule(ft, new, n_gqa, n_expert, imatrix, iv, n_wv, seventy_b), iv + 1
    if base.startswith("ffn_down"):
        return _ffn_down_rule(ft, new, t.layer, n, n_expert, imatrix), iv
    return _other_rule(ft, base, t.layer, new, n, n_expert), iv


def _iq_low_rule(ft, base, i, new, n, n_gqa, n_expert):
    """The IQ1/IQ2 presets' branch (llama-quant.cpp, "ftype == LLAMA_FTYPE_MOSTLY_IQ2_XXS || ...")."""
    if base == "attn_v":
        return "q4_K" if (n_gqa >= 4 or n_expert >= 4) else ("iq3_s" if ft in ("IQ2_S", "IQ2_M") else "q2_K")
    if base == "attn_k" and n_expert == 8:
        return "q4_K"
    if base.startswith("ffn_down"):
        return ("iq3_s" if ft in ("IQ2_S", "IQ2_M") else "q2_K") if i < n // 8 else new
    if base == "attn_output":
        if n_expert == 8:
            return "q5_K"
        if ft in ("IQ1_S", "IQ1_M"):
            return "iq2_xxs"
        if ft in ("IQ2_S", "IQ2_M"):
            return "iq3_s"
    return new


def _attn_v_rule(ft, new, n_gqa, n_expert, imatrix, iv, n_wv, seventy_b):
    """attn_v.weight (llama-quant.cpp, "name.find("attn_v.weight")"): more bits for grouped-query
    attention, the first V tensors and the 70B; q8_0 with 8 experts."""
    if ft == "Q2_K":
        new = "q4_K" if n_gqa >= 4 else "q3_K"
    elif ft == "Q2_K_S" and n_gqa >= 4:
        new = "q4_K"
    elif ft == "IQ3_XXS":
        new = "q4_K" if n_gqa >= 4 else ("iq3_s" if not imatrix else "iq3_xxs")
    elif ft in ("IQ3_XS", "IQ3_S") and n_gqa >= 4:
        new = "q4_K"
    elif ft == "IQ3_M":
        new = "q4_K"
    elif ft == "Q3_K_M":
        new = "q5_K" if iv < 2 else "q4_K"
    elif ft == "Q3_K_L":
        new = "q5_K"
    elif ft in ("IQ4_NL", "IQ4_XS") and n_gqa >= 4:
        new = "q5_K"
    elif ft in ("Q4_K_M", "Q5_K_M") and _use_more_bits(iv, n_wv):
        new = "q6_K"
    elif ft == "Q4_K_S" and iv < 4:
        new = "q5_K"
    if seventy_b and new in ("q3_K", "q4_K"):
        new = "q5_K"
    return "q8_0" if n_expert == 8 else new


def _ffn_down_rule(ft, new, i, n, n_expert, imatrix):
    """ffn_down (llama-quant.cpp, "name.find("ffn_down")"): more bits in the first eighth of the layers
    and where use_more_bits picks them."""
    if ft == "Q2_K":
        return "q3_K"
    if ft == "Q2_K_S":
        return "q4_K" if i < n // 8 else new
    if ft == "IQ3_XXS" and not imatrix:
        return "q4_K" if i < n // 8 else "q3_K"
    if ft == "Q3_K_M":
        return "q5_K" if i < n // 16 else "q4_K"
    if ft == "IQ3_M" and (i < n // 8 or (n_expert == 8 and _use_more_bits(i, n))):
        return "q4_K"
    if ft == "Q3_K_L":
        return "q5_K"
    if ft == "Q4_K_M":
        return "q6_K" if _use_more_bits(i, n) else new
    if i < n // 8 and ft in ("IQ4_NL", "IQ4_XS") and not imatrix:
        return "q5_K"
    if ft == "Q5_K_M" and _use_more_bits(i, n):
        return "q6_K"
    if ft == "Q4_K_S" and i < n // 8:
        return "q5_K"
    if ft in ("Q4_0", "Q5_0") and imatrix and i < n // 8:
        return "q4_1" if ft == "Q4_0" else "q5_1"
    return new


def _other_rule(ft, base, i, new, n, n_expert):
    """attn_k, attn_q, attn_output, attn_qkv, ffn_gate and ffn_up (llama-quant.cpp, the branches after
    ffn_down)."""
    if base == "attn_k":
        return "q8_0" if n_expert == 8 else {"IQ3_XS": "iq3_xxs", "IQ3_XXS": "iq2_s"}.get(ft, new)
    if base == "attn_q":
        return {"IQ3_XS": "iq3_xxs", "IQ3_XXS": "iq2_s"}.get(ft, new)
    if base == "attn_output":
        if n_expert == 8:
            return "q5_K" if ft in ("Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M",
                                    "IQ3_S", "IQ3_M", "IQ4_XS") else new
        return {"Q2_K": "q3_K", "IQ3_XXS": "iq3_s", "Q3_K_M": "q4_K", "Q3_K_L": "q5_K", "IQ3_M": "q4_K"}.get(ft, new)
    if base == "attn_qkv":
        return {"Q3_K_M": "q4_K", "Q3_K_L": "q4_K", "IQ3_M": "q4_K", "Q4_K_M": "q5_K", "Q5_K_M": "q6_K"}.get(ft, new)
    if (base.startswith("ffn_gate") or base.startswith("ffn_up")) and ft == "IQ3_XS" and n // 8 <= i < 7 * n // 8:
        return "iq3_xxs"
    return new


def tensor_bytes(t: Tensor, ggml_type: str) -> int:
    return row_bytes(ggml_type, t.ne0) * t.rows


@dataclass(frozen=True)
class GgufFile:
    preset: str
    bytes: int
    elements: int
    type_counts: tuple          # (type, tensors) as llama_model_loader prints them ("type q4_K: 193 tensors")

    @property
    def bits_per_weight(self) -> float:
        return self.bytes * 8 / self.elements


@lru_cache(maxsize=256)
def gguf_file(m: ModelSpec, preset: str) -> GgufFile:
    tensors = model_tensors(m)
    types = tensor_types(m, preset)
    total = sum(tensor_bytes(t, ty) for t, ty in zip(tensors, types))
    elements = sum(t.elements for t in tensors)
    counts: dict = {}
    for t, ty in zip(tensors, types):
        if t.name != "norms and biases (f32)" and t.name != "output_norm (f32)":
            counts[ty] = counts.get(ty, 0) + 1
    return GgufFile(preset, total, elements, tuple(sorted(counts.items())))
