"""Read a Hugging Face ``config.json`` dict into a ModelSpec, by its ``model_type``."""

from __future__ import annotations

from ..errors import InputError, MAX_DIMENSION, MAX_LAYERS, require_int, require_number, show
from .spec import ModelSpec

PREFIX = "hf_config."
# Config fields that give a layer count; checked against MAX_LAYERS before any loop over layers.
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers")

# model_type -> (family, defaults that differ from the generic decoder). Defaults are those of
# each configuration class in transformers 5.x (configuration_<type>.py).
_DECODER_TYPES = {
    "llama": {},
    "mistral": {},
    "mixtral": {},
    "qwen2": {"qkv_bias": True},
    "qwen2_moe": {"qkv_bias": True},
    "qwen3": {"qk_norm": "per_head"},
    "qwen3_moe": {"qk_norm": "per_head"},
    "gemma": {"tied": True, "gemma_norm": True, "activation": "gelu_pytorch_tanh"},
    "gemma2": {"tied": True, "gemma_norm": True, "activation": "gelu_pytorch_tanh", "norms_per_layer": 4},
    "gemma3_text": {"tied": True, "gemma_norm": True, "activation": "gelu_pytorch_tanh", "norms_per_layer": 4,
                    "qk_norm": "per_head"},
    "phi3": {"fused_qkv": True, "fused_gate_up": True},
    "olmoe": {"qk_norm": "full"},
    # OLMo 2 (modeling_olmo2.py): q_norm over num_heads*head_dim and k_norm over num_kv_heads*head_dim;
    # post_attention and post_feedforward norms instead of input and post_attention (two per layer).
    "olmo2": {"qk_norm": "full"},
    # Granite (modeling_granite.py): a Llama decoder with scalar embedding/residual/attention/logits
    # multipliers, which hold no parameters and no extra tensors.
    "granite": {},
    "gpt_oss": {"sinks": True, "expert_bias": True},
    "deepseek_v2": {},
    "deepseek_v3": {},
    "kimi_k2": {},          # Kimi K2 / K2.5 reuse DeepSeek-V3's modeling code (trust_remote_code DeepseekV3)
}
_DEEPSEEK_STYLE = ("deepseek_v2", "deepseek_v3", "kimi_k2")
SUPPORTED_TYPES = tuple(sorted(list(_DECODER_TYPES) + ["gpt2", "bert", "gpt_neox", "chatglm"]))

_ACTIVATION_NAMES = {
    "silu": "silu", "swish": "silu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
    "gelu_new": "gelu_new", "relu": "relu", "gelu_python": "gelu",
}


class _Reader:
    """Typed access to the config's fields, with errors that name them."""

    def __init__(self, cfg: dict, prefix: str):
        self.cfg = cfg
        self.prefix = prefix

    def has(self, key: str) -> bool:
        return self.cfg.get(key) is not None

    def int(self, key: str, default=None, *, minimum: int = 1, maximum: int | None = None,
            alt: str | None = None) -> int:
        value = self.cfg.get(key)
        if value is None and alt is not None:
            key, value = alt, self.cfg.get(alt)
        if value is None:
            if default is None:
                raise InputError(self.prefix + key, "is missing and has no default")
            return default
        if maximum is None:
            maximum = MAX_LAYERS if key in _LAYER_KEYS else MAX_DIMENSION
        return require_int(self.prefix + key, value, minimum=minimum, maximum=maximum)

    def field(self, key: str) -> str:
        return self.prefix + key

    def float(self, key: str, default: float) -> float:
        value = self.cfg.get(key)
        if value is None:
            return default
        return require_number(self.prefix + key, value, minimum=0.0, maximum=1e9)

    def bool(self, key: str, default: bool) -> bool:
        value = self.cfg.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InputError(self.prefix + key, f"must be true or false, got {show(value)}")
        return value

    def str(self, key: str, default: str) -> str:
        value = self.cfg.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str):
            raise InputError(self.prefix + key, "must be a string")
        return value


def read_hf_config(cfg, name: str = "", prefix: str = PREFIX) -> ModelSpec:
    """Build a ModelSpec from a config.json dict; raise InputError naming any bad field by its
    path in the request (``prefix`` + the config's own key)."""
    if not isinstance(cfg, dict):
        raise InputError(prefix.rstrip("."), "must be a JSON object (the contents of config.json)")
    if "text_config" in cfg and isinstance(cfg["text_config"], dict) and "hidden_size" not in cfg:
        cfg = dict(cfg["text_config"])          # multimodal wrappers keep the language model here
        prefix += "text_config."
    model_type = cfg.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        raise InputError(prefix + "model_type", "must be a string")
    model_type = (model_type or "")[:64]
    r = _Reader(cfg, prefix)
    name = name or (cfg.get("_name_or_path") if isinstance(cfg.get("_name_or_path"), str) else "") or \
        model_type or "custom"
    name = name[:100]
    try:
        return _read(r, name, model_type)
    except InputError as exc:
        if exc.field.startswith("model.") and not exc.field.startswith(prefix):   # a ModelSpec rule the reader did not check
            raise InputError(prefix.rstrip("."), f"gives an inconsistent model: {exc.field[6:]} {exc.message}") from None
        raise


def _read(r: _Reader, name: str, model_type: str) -> ModelSpec:
    if model_type == "gpt2":
        return _gpt2(r, name)
    if model_type == "bert":
        return _bert(r, name)
    if model_type == "gpt_neox":
        return _neox(r, name)
    if model_type == "chatglm":
        return _chatglm(r, name)
    warnings = ()
    if model_type not in _DECODER_TYPES:
        warnings = (f"model_type {model_type!r} is not one this tool knows; read as a Llama-style decoder "
                    f"from its standard fields. Known types: {', '.join(SUPPORTED_TYPES)}",)
    return _decoder(r, name, model_type, _DECODER_TYPES.get(model_type, {}), warnings)


def _kv_heads(r: _Reader, key: str, n_heads: int, default: int | None = None) -> int:
    """KV heads must divide the attention heads (grouped-query attention)."""
    n_kv = r.int(key, n_heads if default is None else default)
    if n_heads % n_kv:
        raise InputError(r.field(key), f"must divide the number of attention heads ({n_heads}), got {n_kv}")
    return n_kv


def _layer_list(r: _Reader, key: str) -> list:
    """A per-layer list (layer indices or layer kinds): at most MAX_LAYERS entries, checked before
    anything loops over it."""
    value = r.cfg.get(key) or []
    if not isinstance(value, list):
        raise InputError(r.field(key), "must be a list")
    if len(value) > MAX_LAYERS:
        raise InputError(r.field(key), f"has {len(value):,} entries; a model has at most {MAX_LAYERS:,} layers")
    return value


def _missing(r: _Reader, keys) -> None:
    absent = [k for k in keys if not r.has(k)]
    if absent:
        raise InputError(r.field(absent[0]), "is missing; this config also lacks " + ", ".join(absent)
                         if len(absent) > 1 else "is missing (an essential field)")


def _window(r: _Reader, n_layers: int, model_type: str) -> tuple[int, int]:
    """Sliding window size and number of sliding-window layers."""
    window = r.cfg.get("sliding_window")
    if window is None or (model_type == "qwen2" or model_type == "qwen2_moe") and not r.cfg.get("use_sliding_window"):
        return 0, 0
    window = r.int("sliding_window")
    types = _layer_list(r, "layer_types") if r.has("layer_types") else None
    if types is not None:
        return window, min(n_layers, sum(1 for t in types[:n_layers] if t == "sliding_attention"))
    pattern = r.cfg.get("sliding_window_pattern")
    if model_type == "gemma2":
        return window, n_layers // 2 + n_layers % 2          # gemma2 alternates, starting with sliding
    if model_type == "gemma3_text":
        pattern = require_int(r.field("sliding_window_pattern"), pattern or 6, maximum=MAX_LAYERS)
        return window, n_layers - n_layers // pattern
    return window, n_layers


def _rope_theta_ok(r: _Reader) -> None:
    # Both spellings are accepted; only the type is checked, since memory does not depend on it.
    params = r.cfg.get("rope_parameters")
    if params is not None and not isinstance(params, dict):
        raise InputError(r.field("rope_parameters"), "must be an object")


def _decoder(r: _Reader, name: str, model_type: str, d: dict, warnings: tuple) -> ModelSpec:
    moe_routed = r.cfg.get("n_routed_experts") or r.cfg.get("num_experts") or r.cfg.get("num_local_experts")
    essentials = ["hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"]
    if not moe_routed or model_type in ("mixtral", "olmoe", "qwen2_moe"):
        essentials.append("intermediate_size")
    _missing(r, essentials)
    _rope_theta_ok(r)
    h = r.int("hidden_size")
    n_layers = r.int("num_hidden_layers")
    n_heads = r.int("num_attention_heads")
    n_kv = _kv_heads(r, "num_key_value_heads", n_heads)
    head_dim = r.int("head_dim", max(1, h // n_heads))
    ffn = r.int("intermediate_size", 1)
    attn_bias = r.bool("attention_bias", False)
    window, sliding_layers = _window(r, n_layers, model_type)
    spec = dict(
        name=name, family="decoder", model_type=model_type, n_layers=n_layers, hidden_size=h, ffn_size=ffn,
        n_heads=n_heads, n_kv_heads=n_kv, head_dim=head_dim, vocab_size=r.int("vocab_size"),
        max_positions=r.int("max_position_embeddings", 4096),
        tied_embeddings=r.bool("tie_word_embeddings", d.get("tied", False)),
        gated_mlp=True, qkv_bias=d.get("qkv_bias", attn_bias), o_bias=attn_bias, mlp_bias=r.bool("mlp_bias", False),
        norm="gemma_rmsnorm" if d.get("gemma_norm") else "rmsnorm", norms_per_layer=d.get("norms_per_layer", 2), qk_norm=d.get("qk_norm", "none"),
        activation=_activation(r, d.get("activation", "silu")), fused_qkv=d.get("fused_qkv", False),
        fused_gate_up=d.get("fused_gate_up", False), attn_dropout=r.float("attention_dropout", 0.0),
        sliding_window=window, sliding_layers=sliding_layers,
        final_logit_softcap=r.float("final_logit_softcapping", 0.0), attention_sinks=d.get("sinks", False),
        warnings=warnings,
    )
    if moe_routed:
        spec.update(_moe(r, model_type, n_layers, ffn))
    if model_type in _DEEPSEEK_STYLE and r.cfg.get("kv_lora_rank"):
        spec.update(q_lora_rank=r.int("q_lora_rank", 0, minimum=0), kv_lora_rank=r.int("kv_lora_rank"),
                    qk_nope_head_dim=r.int("qk_nope_head_dim"), qk_rope_head_dim=r.int("qk_rope_head_dim"),
                    v_head_dim=r.int("v_head_dim"))
        spec["head_dim"] = spec["qk_nope_head_dim"] + spec["qk_rope_head_dim"]
    return ModelSpec(**spec)


def _moe(r: _Reader, model_type: str, n_layers: int, ffn: int) -> dict:
    """Expert counts and sizes, accepting each family's field names."""
    if r.has("n_routed_experts"):
        n_experts = r.int("n_routed_experts")
    else:
        n_experts = r.int("num_experts", alt="num_local_experts")
    k = r.int("num_experts_per_tok", 2, maximum=n_experts)
    expert_ffn = r.int("moe_intermediate_size", ffn)
    out = dict(n_experts=n_experts, experts_per_token=k, expert_ffn_size=expert_ffn)
    if model_type == "gpt_oss":
        out["expert_bias"] = True
    if model_type in _DEEPSEEK_STYLE:
        out["n_shared_experts"] = r.int("n_shared_experts", 0, minimum=0)
        out["shared_expert_ffn_size"] = expert_ffn
        freq = r.int("moe_layer_freq", 1, maximum=MAX_LAYERS)
        first = min(r.int("first_k_dense_replace", 0, minimum=0), n_layers)
        moe = sum(1 for i in range(first, n_layers) if (i - first) % freq == 0) if freq > 1 else n_layers - first
        out["dense_layers"] = n_layers - moe
    elif model_type in ("qwen2_moe", "qwen3_moe"):
        step = r.int("decoder_sparse_step", 1, maximum=MAX_LAYERS)
        only = _layer_list(r, "mlp_only_layers")
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in only):
            raise InputError(r.field("mlp_only_layers"), "must be a list of layer indices")
        only = set(only)                         # n_layers is already bounded by MAX_LAYERS
        moe = sum(1 for i in range(n_layers) if i not in only and (i + 1) % step == 0)
        out["dense_layers"] = n_layers - moe
        if model_type == "qwen2_moe" and r.int("shared_expert_intermediate_size", 0, minimum=0):
            out.update(n_shared_experts=1, shared_expert_ffn_size=r.int("shared_expert_intermediate_size"),
                       shared_expert_gate=True)
    return out


def _activation(r: _Reader, default: str) -> str:
    raw = r.cfg.get("hidden_activation") or r.cfg.get("hidden_act") or r.cfg.get("activation_function") or default
    if not isinstance(raw, str):
        raise InputError(r.field("hidden_act"), "must be a string")
    if raw not in _ACTIVATION_NAMES:
        raise InputError(r.field("hidden_act"), f"unknown activation {raw[:40]!r}; known: "
                                                + ", ".join(sorted(_ACTIVATION_NAMES)))
    return _ACTIVATION_NAMES[raw]


def _gpt2(r: _Reader, name: str) -> ModelSpec:
    _missing(r, ["n_embd", "n_layer", "n_head", "vocab_size"])
    h = r.int("n_embd")
    n_heads = r.int("n_head")
    return ModelSpec(
        name=name, family="gpt2", model_type="gpt2", n_layers=r.int("n_layer"), hidden_size=h,
        ffn_size=r.int("n_inner", 4 * h), n_heads=n_heads, n_kv_heads=n_heads, head_dim=max(1, h // n_heads),
        vocab_size=r.int("vocab_size"), max_positions=r.int("n_positions", 1024), tied_embeddings=True,
        gated_mlp=False, qkv_bias=True, o_bias=True, mlp_bias=True, norm="layernorm",
        activation=_activation(r, "gelu_new"), fused_qkv=True, learned_positions=True,
        attn_dropout=r.float("attn_pdrop", 0.1), hidden_dropout=r.float("resid_pdrop", 0.1),
    )


def _bert(r: _Reader, name: str) -> ModelSpec:
    _missing(r, ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"])
    h = r.int("hidden_size")
    n_heads = r.int("num_attention_heads")
    return ModelSpec(
        name=name, family="bert", model_type="bert", n_layers=r.int("num_hidden_layers"), hidden_size=h,
        ffn_size=r.int("intermediate_size"), n_heads=n_heads, n_kv_heads=n_heads, head_dim=max(1, h // n_heads),
        vocab_size=r.int("vocab_size"), max_positions=r.int("max_position_embeddings", 512),
        tied_embeddings=r.bool("tie_word_embeddings", True), gated_mlp=False, qkv_bias=True, o_bias=True,
        mlp_bias=True, norm="layernorm", activation=_activation(r, "gelu"), learned_positions=True,
        type_vocab_size=r.int("type_vocab_size", 2, minimum=0),
        attn_dropout=r.float("attention_probs_dropout_prob", 0.1), hidden_dropout=r.float("hidden_dropout_prob", 0.1),
    )


def _neox(r: _Reader, name: str) -> ModelSpec:
    _missing(r, ["hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"])
    h = r.int("hidden_size")
    n_heads = r.int("num_attention_heads")
    bias = r.bool("attention_bias", True)
    return ModelSpec(
        name=name, family="neox", model_type="gpt_neox", n_layers=r.int("num_hidden_layers"), hidden_size=h,
        ffn_size=r.int("intermediate_size", 4 * h), n_heads=n_heads, n_kv_heads=n_heads,
        head_dim=max(1, h // n_heads), vocab_size=r.int("vocab_size"),
        max_positions=r.int("max_position_embeddings", 2048), tied_embeddings=r.bool("tie_word_embeddings", False),
        gated_mlp=False, qkv_bias=bias, o_bias=bias, mlp_bias=True, norm="layernorm",
        activation=_activation(r, "gelu"), fused_qkv=True,
        attn_dropout=r.float("attention_dropout", 0.0), hidden_dropout=r.float("hidden_dropout", 0.0),
    )


def _chatglm(r: _Reader, name: str) -> ModelSpec:
    _missing(r, ["num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads"])
    if not (r.has("padded_vocab_size") or r.has("vocab_size")):
        raise InputError(r.field("padded_vocab_size"), "is missing (an essential field)")
    h = r.int("hidden_size")
    n_heads = r.int("num_attention_heads")
    mqa = r.bool("multi_query_attention", False)
    return ModelSpec(
        name=name, family="chatglm", model_type="chatglm", n_layers=r.int("num_layers"), hidden_size=h,
        ffn_size=r.int("ffn_hidden_size"), n_heads=n_heads,
        n_kv_heads=_kv_heads(r, "multi_query_group_num", n_heads, 1) if mqa else n_heads,
        head_dim=r.int("kv_channels", max(1, h // n_heads)),
        vocab_size=r.int("padded_vocab_size", alt="vocab_size"), max_positions=r.int("seq_length", 8192),
        tied_embeddings=False, gated_mlp=True, qkv_bias=r.bool("add_qkv_bias", True),
        o_bias=r.bool("add_bias_linear", False), mlp_bias=r.bool("add_bias_linear", False),
        norm="rmsnorm" if r.bool("rmsnorm", True) else "layernorm", activation="silu", fused_qkv=True,
        fused_gate_up=True, attn_dropout=r.float("attention_dropout", 0.0),
        hidden_dropout=r.float("hidden_dropout", 0.0),
    )
