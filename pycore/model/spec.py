"""The model architecture: one frozen dataclass of dimensions and layer choices."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields

from ..errors import InputError, MAX_DIMENSION, MAX_LAYERS, MAX_POSITIONS
from ..schema import choice, flag, integer, number, spec, text, validate

# Families share a layer layout; each is written out in params.py and activations.py.
#  decoder: Llama-style pre-norm decoder (llama, mistral, qwen*, gemma*, phi3, olmoe, mixtral, deepseek)
#  gpt2:    GPT-2 and GPTBigCode (learned positions, fused c_attn, LayerNorm, dropout; BigCode: multi-query)
#  bert:    BERT encoder with its masked-LM head (post-norm, LayerNorm, gelu, dropout)
#  neox:    GPT-NeoX (parallel attention + MLP, fused query_key_value, LayerNorm)
#  chatglm: ChatGLM2/3 (fused query_key_value with bias, fused SwiGLU dense_h_to_4h)
FAMILIES = ("decoder", "gpt2", "bert", "neox", "chatglm")
# gemma_rmsnorm: Gemma's RMSNorm computes in fp32 and scales by (1 + weight) before casting
# back (modeling_gemma.py), so it keeps one more fp32 tensor than Llama's.
# layernorm_weight: Cohere's LayerNorm, weight only (modeling_cohere.py CohereLayerNorm).
NORMS = ("rmsnorm", "gemma_rmsnorm", "layernorm", "layernorm_weight")
# Activations by how much autograd saves: "silu"/"gelu"/"gelu_tanh"/"relu" are one
# ATen op each (save the input); "gelu_new" is transformers' NewGELUActivation, written
# as six Python-level ops (transformers/activations.py) that save three more tensors.
ACTIVATIONS = ("silu", "gelu", "gelu_tanh", "gelu_new", "relu")
QK_NORMS = ("none", "per_head", "full")
# The model's head (the Auto class it is loaded with): the language-modelling head of its family, or a
# classification head with num_labels outputs (transformers modeling_layers.py GenericFor*; BERT's own
# BertFor* classes). A reward model is a sequence classifier with one output.
HEADS = ("causal-lm", "masked-lm", "sequence-classification", "token-classification", "reward")
CLASSIFICATION_HEADS = ("sequence-classification", "token-classification", "reward")


_DIM = integer(1, MAX_DIMENSION)
_OPTIONAL_DIM = integer(0, MAX_DIMENSION)
_REQUIRED = MISSING


@dataclass(frozen=True)
class ModelSpec:
    """A transformer's dimensions. Derived values are functions below, not fields."""

    name: str
    family: str = spec(_REQUIRED, choice(FAMILIES))
    n_layers: int = spec(_REQUIRED, integer(1, MAX_LAYERS))
    hidden_size: int = spec(_REQUIRED, _DIM)
    ffn_size: int = spec(_REQUIRED, _DIM)
    n_heads: int = spec(_REQUIRED, _DIM)
    n_kv_heads: int = spec(_REQUIRED, _DIM)
    head_dim: int = spec(_REQUIRED, _DIM)
    vocab_size: int = spec(_REQUIRED, _DIM)
    max_positions: int = spec(4096, integer(1, MAX_POSITIONS))
    tied_embeddings: bool = spec(False, flag())
    gated_mlp: bool = spec(True, flag())
    qkv_bias: bool = spec(False, flag())
    o_bias: bool = spec(False, flag())
    mlp_bias: bool = spec(False, flag())
    norm: str = spec("rmsnorm", choice(NORMS))
    norms_per_layer: int = spec(2, integer(1, 4))
    qk_norm: str = spec("none", choice(QK_NORMS))
    activation: str = spec("silu", choice(ACTIVATIONS))
    fused_qkv: bool = spec(False, flag())
    fused_gate_up: bool = spec(False, flag())
    # Cohere: attention and MLP both read the one input norm's output, and their sum joins the residual.
    parallel_block: bool = spec(False, flag())
    learned_positions: bool = spec(False, flag())
    type_vocab_size: int = spec(0, _OPTIONAL_DIM)
    attn_dropout: float = spec(0.0, number(0.0, 1.0))
    hidden_dropout: float = spec(0.0, number(0.0, 1.0))
    # Mixture of experts (0 experts = dense).
    n_experts: int = spec(0, _OPTIONAL_DIM)
    experts_per_token: int = spec(0, _OPTIONAL_DIM)
    expert_ffn_size: int = spec(0, _OPTIONAL_DIM)
    n_shared_experts: int = spec(0, _OPTIONAL_DIM)
    shared_expert_ffn_size: int = spec(0, _OPTIONAL_DIM)
    shared_expert_gate: bool = spec(False, flag())
    dense_layers: int = spec(0, integer(0, MAX_LAYERS))
    # MoE layers every moe_layer_step-th layer (Llama 4's interleave_moe_layer_step, Qwen-MoE's
    # decoder_sparse_step); 1 = the dense layers come first (DeepSeek's first_k_dense_replace).
    moe_layer_step: int = spec(1, integer(1, MAX_LAYERS))
    # gpt-oss: the router and every expert projection carry a bias (modeling_gpt_oss.py GptOssExperts).
    expert_bias: bool = spec(False, flag())
    # Multi-head latent attention (DeepSeek-V2/V3); kv_lora_rank 0 = ordinary attention.
    q_lora_rank: int = spec(0, _OPTIONAL_DIM)
    kv_lora_rank: int = spec(0, _OPTIONAL_DIM)
    qk_nope_head_dim: int = spec(0, _OPTIONAL_DIM)
    qk_rope_head_dim: int = spec(0, _OPTIONAL_DIM)
    v_head_dim: int = spec(0, _OPTIONAL_DIM)
    # Sliding-window attention: window in tokens (0 = none) and how many layers use it.
    sliding_window: int = spec(0, _OPTIONAL_DIM)
    sliding_layers: int = spec(0, integer(0, MAX_LAYERS))
    # Llama 4: the window is chunked (a token sees its own chunk of sliding_window tokens), not sliding.
    chunked_attention: bool = spec(False, flag())
    # gpt-oss: one learned sink logit per head and layer, joined to the scores before softmax
    # (modeling_gpt_oss.py self_attn.sinks); parameters only, no KV.
    attention_sinks: bool = spec(False, flag())
    final_logit_softcap: float = spec(0.0, number(0.0, 1e6))
    # Qwen3-Next: the query projection also gives a sigmoid gate on the attention output (q_proj out
    # = 2 x heads x head_dim), and linear_attn_layers layers are Gated DeltaNet linear attention
    # (modeling_qwen3_next.py Qwen3NextGatedDeltaNet) with these head counts and widths.
    attn_output_gate: bool = spec(False, flag())
    linear_attn_layers: int = spec(0, integer(0, MAX_LAYERS))
    linear_k_heads: int = spec(0, _OPTIONAL_DIM)
    linear_v_heads: int = spec(0, _OPTIONAL_DIM)
    linear_k_head_dim: int = spec(0, _OPTIONAL_DIM)
    linear_v_head_dim: int = spec(0, _OPTIONAL_DIM)
    linear_conv_kernel: int = spec(0, integer(0, 64))
    model_type: str = spec("", text(64))
    head: str = spec("", choice(("",) + HEADS))            # "" = the family's language-modelling head
    num_labels: int = spec(0, _OPTIONAL_DIM)
    warnings: tuple = field(default=(), compare=False)
    # a multimodal checkpoint's vision encoder and projector (pycore/model/vision.py): loaded by the serving
    # engines, not by a text-only transformers load (a VisionTower, or None)
    vision: object = field(default=None)

    def __post_init__(self):
        validate_model(self)


def validate_model(m: ModelSpec, where: str = "model") -> None:
    """Check every dimension; raise InputError naming the first bad field."""
    if not isinstance(m.name, str):
        raise InputError(where + ".name", "must be a string")
    validate(m, where)
    f = where + "."
    if m.n_heads % m.n_kv_heads:
        raise InputError(f + "n_kv_heads", f"must divide n_heads ({m.n_heads}), got {m.n_kv_heads}")
    if m.moe_layer_step > 1 and m.n_experts and m.n_layers - m.dense_layers != m.n_layers // m.moe_layer_step:
        raise InputError(f + "moe_layer_step", f"gives {m.n_layers // m.moe_layer_step} MoE layers, not "
                                               f"{m.n_layers - m.dense_layers} (n_layers - dense_layers)")
    if m.dense_layers > m.n_layers:
        raise InputError(f + "dense_layers", f"must be at most n_layers ({m.n_layers}), got {m.dense_layers}")
    if m.sliding_layers > m.n_layers:
        raise InputError(f + "sliding_layers", f"must be at most n_layers ({m.n_layers}), got {m.sliding_layers}")
    if m.n_experts:
        if not 1 <= m.experts_per_token <= m.n_experts:
            raise InputError(f + "experts_per_token", f"must be from 1 to n_experts ({m.n_experts}), "
                                                     f"got {m.experts_per_token}" +
                             (" (give it with n_experts)" if not m.experts_per_token else ""))
        if m.expert_ffn_size < 1:
            raise InputError(f + "expert_ffn_size", "must be at least 1 for a mixture of experts (give it with "
                                                    "n_experts)")
    elif m.experts_per_token:
        raise InputError(f + "experts_per_token", "needs n_experts > 0")
    if m.kv_lora_rank and not (m.qk_nope_head_dim and m.qk_rope_head_dim and m.v_head_dim):
        raise InputError(f + "kv_lora_rank", "multi-head latent attention also needs qk_nope_head_dim, "
                                              "qk_rope_head_dim and v_head_dim")
    if m.linear_attn_layers + m.sliding_layers >= m.n_layers and m.linear_attn_layers:
        raise InputError(f + "linear_attn_layers", f"leaves no full-attention layer among the {m.n_layers} "
                                                   f"(linear {m.linear_attn_layers}, sliding {m.sliding_layers})")
    if max(m.linear_k_heads * m.linear_k_head_dim, m.linear_v_heads * m.linear_v_head_dim) > MAX_DIMENSION:
        raise InputError(f + "linear_v_heads", f"heads x head dim must be at most {MAX_DIMENSION:,}")
    if m.linear_attn_layers and not (m.linear_k_heads and m.linear_v_heads and m.linear_k_head_dim
                                     and m.linear_v_head_dim and m.linear_conv_kernel):
        raise InputError(f + "linear_attn_layers", "linear attention also needs linear_k_heads, linear_v_heads, "
                                                   "linear_k_head_dim, linear_v_head_dim and linear_conv_kernel")
    if m.linear_attn_layers and m.linear_v_heads % m.linear_k_heads:
        raise InputError(f + "linear_v_heads", f"must be a multiple of linear_k_heads ({m.linear_k_heads})")
    if m.expert_bias and not m.n_experts:
        raise InputError(f + "expert_bias", "needs n_experts > 0")
    if m.head in CLASSIFICATION_HEADS and m.num_labels < 1:
        raise InputError(f + "num_labels", "a classification head needs at least one label")
    if m.family == "gpt2" and not m.learned_positions:
        raise InputError(f + "learned_positions", "GPT-2 uses learned positions")


# ---- derived values -------------------------------------------------------

def norm_params_per_unit(m: ModelSpec) -> int:
    """Parameters of a normalisation per hidden unit: weight and bias for LayerNorm, a weight otherwise."""
    return 2 if m.norm == "layernorm" else 1


def is_layernorm(m: ModelSpec) -> bool:
    return m.norm in ("layernorm", "layernorm_weight")


def is_mla(m: ModelSpec) -> bool:
    return m.kv_lora_rank > 0


def attention_layers(m: ModelSpec) -> int:
    """Layers with softmax attention (and a KV cache); the rest are linear attention."""
    return m.n_layers - m.linear_attn_layers


def linear_key_dim(m: ModelSpec) -> int:
    return m.linear_k_heads * m.linear_k_head_dim


def linear_value_dim(m: ModelSpec) -> int:
    return m.linear_v_heads * m.linear_v_head_dim


def linear_conv_dim(m: ModelSpec) -> int:
    """Channels of Gated DeltaNet's depthwise causal convolution: q, k and v (2 x key_dim + value_dim)."""
    return 2 * linear_key_dim(m) + linear_value_dim(m)


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


def lm_head_kind(m: ModelSpec) -> str:
    """The head that is used: the one asked for, else the family's language-modelling head."""
    return m.head or ("masked-lm" if m.family == "bert" else "causal-lm")


def is_classifier(m: ModelSpec) -> bool:
    return m.head in CLASSIFICATION_HEADS


def moe_layers(m: ModelSpec) -> int:
    return m.n_layers - m.dense_layers if m.n_experts else 0


def is_moe_layer(m: ModelSpec, i: int) -> bool:
    """Whether layer ``i`` has the experts: every moe_layer_step-th layer when the model interleaves
    them, else the layers after the dense ones."""
    if not m.n_experts:
        return False
    if m.moe_layer_step > 1:
        return (i + 1) % m.moe_layer_step == 0
    return i >= m.dense_layers


def dense_layers_in(m: ModelSpec, first: int, count: int) -> int:
    """Dense layers among layers first .. first + count - 1 (a pipeline stage)."""
    if not m.n_experts:
        return count
    if m.moe_layer_step > 1:
        return sum(1 for i in range(first, first + count) if not is_moe_layer(m, i))
    return max(0, min(first + count, m.dense_layers) - first)


DIMENSION_FIELDS = tuple(f.name for f in fields(ModelSpec) if f.name not in ("name", "warnings"))


@dataclass(frozen=True)
class ModelSize:
    """A model known only by its parameter count, for model-state questions like the ZeRO paper's.
    The optional dimensions let formula recipes add their activation terms."""

    parameters: int = spec(MISSING, integer(1, 10 ** 15, doc="total parameters"))
    largest_layer_parameters: int = spec(0, integer(0, 10 ** 15, doc="parameters of the largest module "
                                                                     "(DeepSpeed's ZeRO-3 estimator)"))
    n_layers: int = spec(0, integer(0, MAX_LAYERS))
    hidden_size: int = spec(0, _OPTIONAL_DIM)
    name: str = spec("custom", text(100))
    family: str = "size only"
    model_type: str = ""
    warnings: tuple = ()
