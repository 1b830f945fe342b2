"""A model's nn.Module tree with the bytes of each tensor, as transformers builds it (names and
registration order of modeling_llama.py / modeling_gpt2.py / modeling_gpt_neox.py at 5.25.0), for the
big-model placement (device_map.py).

Two byte counts of the same tree:
- ``placement``: what ``compute_module_sizes`` counts when the model is still on the meta device:
  16-bit tensors at their dtype; bitsandbytes' quantised weights at the quantizer's element size
  (``quantized_element_size`` 0.5 for 4-bit, 1 for 8-bit: quantizer_bnb_4bit.py:53-54,
  quantizer_bnb_8bit.py:53-54 @5.25.0), which leaves out their absmax and scales; GPTQ/AWQ layers as
  the packed buffers that replaced the linears before the map is computed (qweight, qzeros, scales,
  g_idx: modeling_utils.py:4442 preprocess_model precedes :4464 _get_device_map @5.25.0);
- ``loaded``: what the device holds once loaded, in the format's full layout (formats.linear_bytes).
The rotary embedding holds two fp32 buffers of head_dim / 2 (inv_freq, original_inv_freq).
"""

from __future__ import annotations

from functools import lru_cache

from ..errors import InputError
from ..model.params import linear_attention_other_params, linears, sink_params
from ..model.spec import (ModelSpec, attention_layers, is_classifier, is_mla, is_moe_layer, kv_dim,
                          norm_params_per_unit, q_dim)
from .device_map import Module, Tensor
from ..model.formats import NONE, WeightFormat, linear_bytes, quantises

FP32 = 4
# MoE routers created in fp32 and kept there (_keep_in_fp32_modules_strict "gate.weight"), and the fp32
# e_score_correction_bias buffer of the noaux_tc routers (modeling_deepseek_v3.py:125-130, 535;
# modeling_glm4_moe.py:275-280, 460; modeling_deepseek_v2.py:91, 467 @5.25.0).
FP32_ROUTER_TYPES = frozenset({"deepseek_v2", "deepseek_v3", "kimi_k2", "glm4_moe"})
SCORE_BIAS_TYPES = frozenset({"deepseek_v3", "kimi_k2", "glm4_moe"})
_LINEAR_ATTN = frozenset({"in_proj_qkvz", "in_proj_ba", "out_proj"})
# (model attribute, embedding, layers, final norm, head) per family, as transformers names them
_NAMES = {"gpt2": ("transformer", "wte", "h", "ln_f", "lm_head"),
          "neox": ("gpt_neox", "embed_in", "layers", "final_layer_norm", "embed_out")}
_DEFAULT_NAMES = ("model", "embed_tokens", "layers", "norm", "lm_head")


def _linear_tensors(fmt: WeightFormat, k: int, n: int, bias: bool, cb: int, placement: bool, marlin: bool,
                    quantised: bool) -> tuple:
    if not quantised:
        fmt = NONE
    if placement and fmt.method in ("bnb-nf4", "bnb-4bit", "bnb-int8"):
        weight = k * n // 2 if fmt.method != "bnb-int8" else k * n
        return (Tensor("weight", weight),) + ((Tensor("bias", n * cb),) if bias else ())
    return (Tensor("weight", linear_bytes(fmt, k, n, bias, cb, marlin and not placement)),)


def _norm(name: str, m: ModelSpec, width: int, cb: int) -> Module:
    tensors = (Tensor("weight", width * cb),)
    if norm_params_per_unit(m) == 2:
        tensors += (Tensor("bias", width * cb),)
    return Module(name, tensors)


def _is_attention_layer(m: ModelSpec, i: int) -> bool:
    """Softmax-attention layers spread evenly among linear-attention ones (Qwen3-Next: every 4th)."""
    a, n = attention_layers(m), m.n_layers
    return a == n or ((i + 1) * a) // n > (i * a) // n


def _layer(m: ModelSpec, i: int, fmt: WeightFormat, cb: int, placement: bool, marlin: bool) -> Module:
    attn, mlp, norms = [], [], []
    moe = is_moe_layer(m, i)
    full = _is_attention_layer(m, i)
    for lin in linears(m):
        if lin.group == "head":
            continue
        if lin.group == "attention":
            if (lin.name in _LINEAR_ATTN and m.linear_attn_layers > 0) == full:
                continue
            target = attn
        elif lin.group == "mlp":
            if moe:
                continue
            target = mlp
        else:                                   # router, experts, shared experts
            if not moe:
                continue
            target = mlp
        k, n = lin.in_features, lin.out_features
        if lin.group == "router" and lin.name == "gate" and m.model_type in FP32_ROUTER_TYPES:
            tensors = (Tensor("weight", k * n * FP32),)
            if m.model_type in SCORE_BIAS_TYPES:
                tensors += (Tensor("e_score_correction_bias", n * FP32, True),)
            target.append(Module(lin.name, tensors))
        elif lin.copies > 1:                    # stacked experts: one 3-D tensor per projection
            one = _linear_tensors(fmt, k, n, lin.bias, cb, placement, marlin, quantises(fmt, lin.group))
            target.append(Module(lin.name, tuple(Tensor(t.name, t.bytes * lin.copies) for t in one)))
        else:
            target.append(Module(lin.name, _linear_tensors(fmt, k, n, lin.bias, cb, placement, marlin,
                                                           quantises(fmt, lin.group))))
    if full and m.qk_norm == "per_head":
        attn += [_norm("q_norm", m, m.head_dim, cb), _norm("k_norm", m, m.head_dim, cb)]
    elif full and m.qk_norm == "full":
        attn += [_norm("q_norm", m, q_dim(m), cb), _norm("k_norm", m, kv_dim(m), cb)]
    if is_mla(m):
        attn += [_norm("q_a_layernorm", m, m.q_lora_rank, cb)] if m.q_lora_rank else []
        attn += [_norm("kv_a_layernorm", m, m.kv_lora_rank, cb)]
    direct = ()
    if m.attention_sinks and full:
        direct = (Tensor("sinks", sink_params(m) // m.n_layers * cb),)
    if not full and m.linear_attn_layers:
        attn.append(Module("linear_attn_other", (Tensor("weight", linear_attention_other_params(m)
                                                        // m.linear_attn_layers * cb),)))
    for j in range(m.norms_per_layer):
        norms.append(_norm(f"norm_{j}", m, m.hidden_size, cb))
    children = (Module("self_attn", direct, tuple(attn)),) + ((Module("mlp", (), tuple(mlp)),) if mlp else ())
    return Module(str(i), (), children + tuple(norms), no_split=True)


@lru_cache(maxsize=64)
def model_tree(m: ModelSpec, fmt: WeightFormat, cb: int, placement: bool = True, marlin: bool = False) -> Module:
    """The causal LM's modules: model (embedding, layers, final norm, rotary), then the head."""
    if m.family == "bert":
        raise InputError("model", "device_map placement is modelled for decoder models; BERT is an encoder")
    base, emb, layers, final, head = _NAMES.get(m.family, _DEFAULT_NAMES)
    h = m.hidden_size
    embedding = (Tensor("weight", m.vocab_size * h * cb),)
    if m.model_type.startswith("gemma"):
        # GemmaScaledWordEmbedding's embed_scale: a 0-d buffer in the model dtype (modeling_gemma.py @5.25.0)
        embedding += (Tensor("embed_scale", cb, True),)
    parts = [Module(emb, embedding)]
    if m.learned_positions:
        parts.append(Module("wpe", (Tensor("weight", m.max_positions * h * cb),)))
    parts.append(Module(layers, (), tuple(_layer(m, i, fmt, cb, placement, marlin) for i in range(m.n_layers))))
    parts.append(_norm(final, m, h, cb))
    if not m.learned_positions:
        half = (m.qk_rope_head_dim if is_mla(m) else m.head_dim) // 2 * FP32
        parts.append(Module("rotary_emb", (Tensor("inv_freq", half, True), Tensor("original_inv_freq", half, True))))
    if is_classifier(m):
        top = Module("score", (Tensor("weight", h * m.num_labels * cb),))
    elif m.tied_embeddings:
        top = Module(head)                     # tied: counted once, with the embedding
    else:
        top = Module(head, (Tensor("weight", m.vocab_size * h * cb),))
    return Module("", (), (Module(base, (), tuple(parts)), top))


def tied_groups(m: ModelSpec) -> tuple:
    """Groups of tied tensor names (transformers' all_tied_weights_keys): the head and the embedding."""
    if not m.tied_embeddings or is_classifier(m):
        return ()
    base, emb, _, _, head = _NAMES.get(m.family, _DEFAULT_NAMES)
    return ((f"{head}.weight", f"{base}.{emb}.weight"),)


def layer_prefix(m: ModelSpec) -> str:
    base, _, layers, _, _ = _NAMES.get(m.family, _DEFAULT_NAMES)
    return f"{base}.{layers}"


def part_names(m: ModelSpec) -> dict:
    """Dotted names of the modules outside the layers: embedding, final norm, head."""
    base, emb, _, final, head = _NAMES.get(m.family, _DEFAULT_NAMES)
    return {"embedding": f"{base}.{emb}", "final norm": f"{base}.{final}",
            "head": "score" if is_classifier(m) else head}
