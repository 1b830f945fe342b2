"""The model architecture: one frozen dataclass of dimensions and layer choices."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..errors import InputError, MAX_DIMENSION, MAX_LAYERS, require_bool, require_choice, require_int, \
    require_number

# Families share a layer layout; each is written out in params.py and activations.py.
#  decoder: Llama-style pre-norm decoder (llama, mistral, qwen*, gemma*, phi3, olmoe, mixtral, deepseek)
#  gpt2:    GPT-2 (learned positions, fused c_attn Conv1D, LayerNorm, gelu_new, dropout)
#  bert:    BERT encoder with its masked-LM head (post-norm, LayerNorm, gelu, dropout)
#  neox:    GPT-NeoX (parallel attention + MLP, fused query_key_value, LayerNorm)
#  chatglm: ChatGLM2/3 (fused query_key_value with bias, fused SwiGLU dense_h_to_4h)
FAMILIES = ("decoder", "gpt2", "bert", "neox", "chatglm")
# gemma_rmsnorm: Gemma's RMSNorm computes in fp32 and scales by (1 + weight) before casting
# back (modeling_gemma.py), so it keeps one more fp32 tensor than Llama's.
NORMS = ("rmsnorm", "gemma_rmsnorm", "layernorm")
# Activations by how much autograd saves: "silu"/"gelu"/"gelu_tanh"/"relu" are one
# ATen op each (save the input); "gelu_new" is transformers' NewGELUActivation, written
# as six Python-level ops (transformers/activations.py) that save three more tensors.
ACTIVATIONS = ("silu", "gelu", "gelu_tanh", "gelu_new", "relu")
QK_NORMS = ("none", "per_head", "full")


@dataclass(frozen=True)
class ModelSpec:
    """A transformer's dimensions. Derived values are functions below, not fields."""

    name: str
    family: str
    n_layers: int
    hidden_size: int
    ffn_size: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab_size: int
    max_positions: int = 4096
    tied_embeddings: bool = False
    gated_mlp: bool = True
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    norm: str = "rmsnorm"
    norms_per_layer: int = 2
    qk_norm: str = "none"
    activation: str = "silu"
    fused_qkv: bool = False
    fused_gate_up: bool = False
    learned_positions: bool = False
    type_vocab_size: int = 0
    attn_dropout: float = 0.0
    hidden_dropout: float = 0.0
    # Mixture of experts (0 experts = dense).
    n_experts: int = 0
    experts_per_token: int = 0
    expert_ffn_size: int = 0
    n_shared_experts: int = 0
    shared_expert_ffn_size: int = 0
    shared_expert_gate: bool = False
    dense_layers: int = 0
    # Multi-head latent attention (DeepSeek-V2/V3); kv_lora_rank 0 = ordinary attention.
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    # Sliding-window attention: window in tokens (0 = none) and how many layers use it.
    sliding_window: int = 0
    sliding_layers: int = 0
    final_logit_softcap: float = 0.0
    model_type: str = ""
    warnings: tuple = field(default=(), compare=False)

    def __post_init__(self):
        validate_model(self)


def validate_model(m: ModelSpec) -> None:
    """Check every dimension; raise InputError naming the first bad field."""
    f = "model."
    require_choice(f + "family", m.family, FAMILIES)
    require_int(f + "n_layers", m.n_layers, maximum=MAX_LAYERS)
    for name in ("hidden_size", "ffn_size", "n_heads", "n_kv_heads", "head_dim", "vocab_size", "max_positions"):
        require_int(f + name, getattr(m, name), maximum=MAX_DIMENSION)
    if m.n_heads % m.n_kv_heads:
        raise InputError(f + "n_kv_heads", f"must divide n_heads ({m.n_heads}), got {m.n_kv_heads}")
    for name in ("tied_embeddings", "gated_mlp", "qkv_bias", "o_bias", "mlp_bias", "fused_qkv", "fused_gate_up",
                 "learned_positions", "shared_expert_gate"):
        require_bool(f + name, getattr(m, name))
    require_choice(f + "norm", m.norm, NORMS)
    require_int(f + "norms_per_layer", m.norms_per_layer, minimum=1, maximum=4)
    require_choice(f + "qk_norm", m.qk_norm, QK_NORMS)
    require_choice(f + "activation", m.activation, ACTIVATIONS)
    for name in ("attn_dropout", "hidden_dropout"):
        require_number(f + name, getattr(m, name), minimum=0.0, maximum=1.0)
    require_number(f + "final_logit_softcap", m.final_logit_softcap, minimum=0.0, maximum=1e6)
    for name in ("type_vocab_size", "n_experts", "experts_per_token", "expert_ffn_size", "n_shared_experts",
                 "shared_expert_ffn_size", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
                 "v_head_dim", "sliding_window"):
        require_int(f + name, getattr(m, name), minimum=0, maximum=MAX_DIMENSION)
    require_int(f + "dense_layers", m.dense_layers, minimum=0, maximum=m.n_layers)
    require_int(f + "sliding_layers", m.sliding_layers, minimum=0, maximum=m.n_layers)
    if m.n_experts:
        require_int(f + "experts_per_token", m.experts_per_token, minimum=1, maximum=m.n_experts)
        require_int(f + "expert_ffn_size", m.expert_ffn_size, minimum=1)
    elif m.experts_per_token:
        raise InputError(f + "experts_per_token", "needs n_experts > 0")
    if m.kv_lora_rank and not (m.qk_nope_head_dim and m.qk_rope_head_dim and m.v_head_dim):
        raise InputError(f + "kv_lora_rank", "multi-head latent attention also needs qk_nope_head_dim, "
                                              "qk_rope_head_dim and v_head_dim")
    if m.family == "gpt2" and not m.learned_positions:
        raise InputError(f + "learned_positions", "GPT-2 uses learned positions")


# ---- derived values -------------------------------------------------------

def is_mla(m: ModelSpec) -> bool:
    return m.kv_lora_rank > 0


def q_dim(m: ModelSpec) -> int:
    """Width of the query projection's output."""
    if is_mla(m):
        return m.n_heads * (m.qk_nope_head_dim + m.qk_rope_head_dim)
    return m.n_heads * m.head_dim


def kv_dim(m: ModelSpec) -> int:
    """Width of one of the key / value projections (MLA: of the decompressed key)."""
    if is_mla(m):
        return m.n_heads * (m.qk_nope_head_dim + m.qk_rope_head_dim)
    return m.n_kv_heads * m.head_dim


def v_dim(m: ModelSpec) -> int:
    if is_mla(m):
        return m.n_heads * m.v_head_dim
    return m.n_kv_heads * m.head_dim


def attn_out_dim(m: ModelSpec) -> int:
    """Width of the attention output, the input of o_proj."""
    if is_mla(m):
        return m.n_heads * m.v_head_dim
    return m.n_heads * m.head_dim


def moe_layers(m: ModelSpec) -> int:
    return m.n_layers - m.dense_layers if m.n_experts else 0


DIMENSION_FIELDS = tuple(f.name for f in fields(ModelSpec) if f.name not in ("name", "warnings"))
