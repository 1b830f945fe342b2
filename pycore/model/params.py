"""Parameter counts, exact to the parameter, from the model's modules.

Each family's modules are listed as in its transformers modeling file
(modeling_llama.py, modeling_gpt2.py, modeling_bert.py, ...). Like nanoGPT's
transformer_sizing notebook, the count is checked against PyTorch's own
``sum(p.numel() for p in model.parameters())`` recorded in shared/calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .spec import (ModelSpec, attention_layers, attn_out_dim, is_classifier, is_mla, kv_dim, linear_conv_dim,
                   linear_key_dim, linear_value_dim, moe_layers, norm_params_per_unit, q_dim)


@dataclass(frozen=True)
class Linear:
    """One nn.Linear (or Conv1D) that occurs in ``layers`` layers, ``copies`` times per layer."""

    name: str
    in_features: int
    out_features: int
    bias: bool
    layers: int
    group: str            # attention | mlp (dense layers) | shared (shared experts) | experts | router | head
    copies: int = 1       # experts per layer for stacked expert weights

    def weight_count(self) -> int:
        return self.in_features * self.out_features * self.layers * self.copies

    def count(self) -> int:
        bias = self.out_features * self.layers * self.copies if self.bias else 0
        return self.weight_count() + bias


@lru_cache(maxsize=512)
def linears(m: ModelSpec) -> tuple[Linear, ...]:
    """Every linear layer of the model except the output head (see ``head_params``)."""
    fam = m.family
    h, L = m.hidden_size, m.n_layers
    if fam == "gpt2":
        # GPT-2: 3h; GPTBigCode with multi_query: h + 2 x head_dim (one key/value head)
        return (Linear("c_attn", h, q_dim(m) + 2 * kv_dim(m), True, L, "attention"),
                Linear("c_proj", h, h, True, L, "attention"),
                Linear("c_fc", h, m.ffn_size, True, L, "mlp"), Linear("c_proj", m.ffn_size, h, True, L, "mlp"))
    if fam == "bert":
        return (Linear("query", h, h, True, L, "attention"), Linear("key", h, h, True, L, "attention"),
                Linear("value", h, h, True, L, "attention"), Linear("dense", h, h, True, L, "attention"),
                Linear("dense", h, m.ffn_size, True, L, "mlp"), Linear("dense", m.ffn_size, h, True, L, "mlp")) + (
                () if is_classifier(m) else (Linear("dense", h, h, True, 1, "head"),))     # the MLM transform
    if fam in ("neox", "chatglm"):
        up = 2 * m.ffn_size if m.gated_mlp else m.ffn_size
        return (Linear("query_key_value", h, q_dim(m) + 2 * kv_dim(m), m.qkv_bias, L, "attention"),
                Linear("dense", attn_out_dim(m), h, m.o_bias, L, "attention"),
                Linear("dense_h_to_4h", h, up, m.mlp_bias, L, "mlp"),
                Linear("dense_4h_to_h", m.ffn_size, h, m.mlp_bias, L, "mlp"))
    return _attention_linears(m) + _mlp_linears(m)


def _attention_linears(m: ModelSpec) -> tuple[Linear, ...]:
    h, L = m.hidden_size, m.n_layers
    if is_mla(m):
        # modeling_deepseek_v2.py / _v3.py: low-rank query (V3) and compressed key/value.
        qk_head = m.qk_nope_head_dim + m.qk_rope_head_dim
        if m.q_lora_rank:
            q = (Linear("q_a_proj", h, m.q_lora_rank, m.qkv_bias, L, "attention"),
                 Linear("q_b_proj", m.q_lora_rank, m.n_heads * qk_head, False, L, "attention"))
        else:
            q = (Linear("q_proj", h, m.n_heads * qk_head, False, L, "attention"),)
        return q + (Linear("kv_a_proj_with_mqa", h, m.kv_lora_rank + m.qk_rope_head_dim, m.qkv_bias, L, "attention"),
                    Linear("kv_b_proj", m.kv_lora_rank, m.n_heads * (m.qk_nope_head_dim + m.v_head_dim), False, L,
                           "attention"),
                    Linear("o_proj", m.n_heads * m.v_head_dim, h, m.o_bias, L, "attention"))
    linear = _linear_attention_linears(m)
    L = attention_layers(m)
    if m.fused_qkv:
        qkv = (Linear("qkv_proj", h, q_dim(m) + 2 * kv_dim(m), m.qkv_bias, L, "attention"),)
    else:
        q_out = q_dim(m) * (2 if m.attn_output_gate else 1)       # Qwen3-Next: query and output gate
        qkv = (Linear("q_proj", h, q_out, m.qkv_bias, L, "attention"),
               Linear("k_proj", h, kv_dim(m), m.qkv_bias, L, "attention"),
               Linear("v_proj", h, kv_dim(m), m.qkv_bias, L, "attention"))
    return qkv + (Linear("o_proj", attn_out_dim(m), h, m.o_bias, L, "attention"),) + linear


def _linear_attention_linears(m: ModelSpec) -> tuple[Linear, ...]:
    """Qwen3NextGatedDeltaNet's projections (modeling_qwen3_next.py): in_proj_qkvz gives q, k (key_dim
    each), v and the gate z (value_dim each); in_proj_ba one beta and one decay input per value head;
    out_proj maps value_dim back. None has a bias."""
    n = m.linear_attn_layers
    if not n:
        return ()
    h, kd, vd = m.hidden_size, linear_key_dim(m), linear_value_dim(m)
    return (Linear("in_proj_qkvz", h, 2 * kd + 2 * vd, False, n, "attention"),
            Linear("in_proj_ba", h, 2 * m.linear_v_heads, False, n, "attention"),
            Linear("out_proj", vd, h, False, n, "attention"))


def linear_attention_other_params(m: ModelSpec) -> int:
    """Gated DeltaNet's parameters outside its linears: the depthwise conv1d weight (conv_dim x 1 x
    kernel, no bias), dt_bias and A_log (one per value head) and the gated RMSNorm's weight (value head
    dim), per linear-attention layer."""
    if not m.linear_attn_layers:
        return 0
    per = linear_conv_dim(m) * m.linear_conv_kernel + 2 * m.linear_v_heads + m.linear_v_head_dim
    return per * m.linear_attn_layers


def _mlp_linears(m: ModelSpec) -> tuple[Linear, ...]:
    h = m.hidden_size
    dense = m.n_layers - moe_layers(m)
    out: list[Linear] = []
    if dense and not m.gated_mlp:
        # a plain MLP (StarCoder2): c_fc up, the activation, c_proj down
        out += [Linear("c_fc", h, m.ffn_size, m.mlp_bias, dense, "mlp"),
                Linear("c_proj", m.ffn_size, h, m.mlp_bias, dense, "mlp")]
    elif dense:
        out += _gated("mlp", h, m.ffn_size, m.mlp_bias, dense, m.fused_gate_up)
    n_moe = moe_layers(m)
    if n_moe:
        out.append(Linear("gate", h, m.n_experts, m.expert_bias, n_moe, "router"))
        # transformers 5 stores experts as stacked 3-D parameters (gate_up_proj, down_proj), not nn.Linear.
        out.append(Linear("experts.gate_up_proj", h, 2 * m.expert_ffn_size, m.expert_bias, n_moe, "experts",
                          m.n_experts))
        out.append(Linear("experts.down_proj", m.expert_ffn_size, h, m.expert_bias, n_moe, "experts", m.n_experts))
        if m.n_shared_experts:
            out += _gated("shared", h, m.shared_expert_ffn_size * m.n_shared_experts, False, n_moe, False)
        if m.shared_expert_gate:
            out.append(Linear("shared_expert_gate", h, 1, False, n_moe, "router"))
    return tuple(out)


def _gated(group: str, h: int, ffn: int, bias: bool, layers: int, fused: bool) -> list[Linear]:
    if fused:
        return [Linear("gate_up_proj", h, 2 * ffn, bias, layers, group), Linear("down_proj", ffn, h, bias, layers, group)]
    return [Linear("gate_proj", h, ffn, bias, layers, group), Linear("up_proj", h, ffn, bias, layers, group),
            Linear("down_proj", ffn, h, bias, layers, group)]


def layer_norm_params(m: ModelSpec, t: int = 1, attention: bool = True) -> int:
    """Normalisation parameters of one layer on one of ``t`` tensor ranks: its norms (weight, and bias
    for LayerNorm; BERT's attention and output LayerNorms), the q/k norms of an ``attention`` layer (a
    linear-attention layer has none: per head they are replicated, over the whole projection split with
    the heads), and MLA's q_a_layernorm and kv_a_layernorm. Attention sinks are not norms (sink_params)."""
    count = norm_params_per_unit(m) * m.hidden_size * (2 if m.family == "bert" else m.norms_per_layer)
    if attention and m.qk_norm == "per_head":
        count += 2 * m.head_dim
    elif attention and m.qk_norm == "full":
        count += (q_dim(m) + kv_dim(m)) // t
    if is_mla(m):
        count += m.q_lora_rank + m.kv_lora_rank
    return count


def norm_params(m: ModelSpec) -> int:
    """Normalisation weights (and LayerNorm biases) in the layers, final norm and heads."""
    per_norm = norm_params_per_unit(m) * m.hidden_size
    linear = m.n_layers - attention_layers(m)
    layers = layer_norm_params(m) * attention_layers(m) + layer_norm_params(m, attention=False) * linear
    if m.family == "bert":
        # embeddings.LayerNorm and the MLM head's transform.LayerNorm (none in the classification heads)
        return layers + per_norm * (1 if is_classifier(m) else 2)
    return layers + per_norm                                  # the final norm


def embedding_params(m: ModelSpec) -> int:
    count = m.vocab_size * m.hidden_size
    if m.learned_positions:
        count += m.max_positions * m.hidden_size
    count += m.type_vocab_size * m.hidden_size
    return count


def head_params(m: ModelSpec) -> int:
    """The output projection to the vocabulary (0 when tied) and BERT's decoder bias; for a
    classification head its score layer instead (transformers modeling_layers.py: score =
    Linear(h, num_labels, bias=False); BERT: the pooler dense h x h + h for sequence classification,
    and a classifier with bias)."""
    if is_classifier(m):
        if m.family == "bert":
            pooler = m.hidden_size * m.hidden_size + m.hidden_size if m.head != "token-classification" else 0
            return pooler + m.hidden_size * m.num_labels + m.num_labels
        return m.hidden_size * m.num_labels
    count = 0 if m.tied_embeddings else m.vocab_size * m.hidden_size
    if m.family == "bert":
        count += m.vocab_size
    return count


def default_lora_targets(m: ModelSpec) -> tuple[str, ...]:
    """Attention projections, named as each family names them (peft's per-model defaults adapt
    c_attn for GPT-2 and query_key_value for GPT-NeoX/ChatGLM; for Llama-style models the common
    recipe, and shared/calibration, adapt q, k, v and o)."""
    if m.family == "gpt2":
        return ("c_attn",)
    if m.family == "bert":
        return ("query", "value")
    if m.family in ("neox", "chatglm"):
        return ("query_key_value",)
    if is_mla(m):
        return ("q_a_proj" if m.q_lora_rank else "q_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj")
    if m.fused_qkv:
        return ("qkv_proj", "o_proj")
    return ("q_proj", "k_proj", "v_proj", "o_proj")


def lora_targets(m: ModelSpec, targets) -> tuple[Linear, ...]:
    """The linear layers peft adapts for ``targets`` (module names, 'all-linear', or None for
    the family's default)."""
    if targets is None:
        targets = default_lora_targets(m)
    candidates = [lin for lin in linears(m) if lin.group not in ("experts",)]
    if targets == "all-linear":
        # peft's all-linear skips the output layer and, here, the MoE router.
        return tuple(lin for lin in candidates if lin.group != "router")
    wanted = set(targets)
    return tuple(lin for lin in candidates if lin.name in wanted)


def lora_params(m: ModelSpec, rank: int, targets) -> int:
    """Adapter parameters: A (rank x in) and B (out x rank) for every adapted linear."""
    return sum(rank * (lin.in_features + lin.out_features) * lin.layers * lin.copies
               for lin in lora_targets(m, targets))


def lora_shapes(m: ModelSpec, rank: int, targets) -> list[tuple[tuple[int, int], int]]:
    """(shape, how many) of every adapter matrix: lora_A is rank x in, lora_B is out x rank."""
    out = []
    for lin in lora_targets(m, targets):
        n = lin.layers * lin.copies
        out += [((rank, lin.in_features), n), ((lin.out_features, rank), n)]
    return out


def param_counts(m: ModelSpec) -> dict[str, int]:
    """Base-model parameters by component; their sum is ``sum(p.numel())``."""
    return dict(_param_counts(m))


@lru_cache(maxsize=512)
def _param_counts(m: ModelSpec) -> tuple:
    parts = {"embeddings": embedding_params(m), "attention": 0, "mlp": 0, "experts": 0, "router": 0,
             "norms": norm_params(m), "head": head_params(m)}
    for lin in linears(m):
        key = {"head": "head", "shared": "mlp"}.get(lin.group, lin.group)     # shared experts count as MLP
        parts[key] += lin.count()
    parts["attention"] += sink_params(m) + linear_attention_other_params(m)
    return tuple(parts.items())


def sink_params(m: ModelSpec) -> int:
    """gpt-oss's attention sinks: one logit per head and layer (self_attn.sinks [n_heads])."""
    return m.n_heads * m.n_layers if m.attention_sinks else 0


def total_params(m: ModelSpec) -> int:
    return sum(param_counts(m).values())


def known_lora_module_names(m: ModelSpec) -> tuple[str, ...]:
    return tuple(sorted({lin.name for lin in linears(m) if lin.group not in ("experts",)}))
