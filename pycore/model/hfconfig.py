"""Read a Hugging Face ``config.json`` dict into a ModelSpec, by its ``model_type``."""

from __future__ import annotations

from dataclasses import replace

from ..errors import InputError, MAX_DIMENSION, MAX_LAYERS, MAX_POSITIONS, require_int, require_number, show
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
    # Llama 4 (modeling_llama4.py): MoE layers (config.moe_layers, every interleave_moe_layer_step-th)
    # with a router, stacked experts of intermediate_size and one shared expert of the same size;
    # the other layers a dense MLP of intermediate_size_mlp. Its q/k norm is an L2 norm without weights.
    # Layers with RoPE (no_rope_layers[i] == 1) attend within chunks of attention_chunk_size.
    "llama4_text": {},
    # GLM-4.5 (modeling_glm4_moe.py): DeepSeek-V3's routing (first_k_dense_replace dense layers, shared
    # experts of n_shared_experts x moe_intermediate_size) with ordinary GQA: q/k/v carry a bias when
    # attention_bias, o_proj never; q_norm and k_norm over head_dim when use_qk_norm.
    "glm4_moe": {"o_bias": False},
    # Qwen3-Next (modeling_qwen3_next.py): every full_attention_interval-th layer is gated softmax
    # attention (q_proj doubled for the output gate, q/k norms over head_dim); the others Gated DeltaNet.
    # Its RMSNorms are zero-centred, x * (1 + w) in fp32, as Gemma's. MoE as Qwen2-MoE's, with a gated
    # shared expert.
    "qwen3_next": {"qk_norm": "per_head", "gemma_norm": True, "attn_output_gate": True},
    # StarCoder2 (modeling_starcoder2.py): biased q/k/v/o (use_bias), a plain c_fc / c_proj MLP with bias,
    # LayerNorms with bias; the head tied by default.
    "starcoder2": {"tied": True, "norm": "layernorm", "gated": False, "use_bias": True,
                   "activation": "gelu_pytorch_tanh"},
    # Cohere / Cohere2 (modeling_cohere.py, modeling_cohere2.py): one weight-only LayerNorm per layer read
    # by attention and the MLP in parallel, tied head; Cohere's optional q/k norms are LayerNorms over
    # [heads, head_dim]; Cohere2 has none, a 4096 window on 3 of 4 layers and head_dim = h / heads.
    "cohere": {"tied": True, "norm": "layernorm_weight", "parallel": True, "norms_per_layer": 1},
    "cohere2": {"tied": True, "norm": "layernorm_weight", "parallel": True, "norms_per_layer": 1},
    "deepseek_v2": {},
    "deepseek_v3": {},
    "kimi_k2": {},          # Kimi K2 / K2.5 reuse DeepSeek-V3's modeling code (trust_remote_code DeepseekV3)
}
_DEEPSEEK_STYLE = ("deepseek_v2", "deepseek_v3", "kimi_k2", "glm4_moe")
# Multimodal checkpoints whose language model is read from text_config (the vision tower is not counted).
_WRAPPER_TYPES = {"llama4": "llama4_text"}
# Fields a published config may leave out, taken from its configuration class (the Hub's Gemma 3
# configs omit them: configuration_gemma3.py Gemma3TextConfig, transformers 5.24 lines 73-79).
_CONFIG_DEFAULTS = {"gemma3_text": {"vocab_size": 262_208, "num_attention_heads": 8, "num_key_value_heads": 4,
                                    "head_dim": 256, "max_position_embeddings": 131_072, "sliding_window": 4096}}
_LLAMA4_EXPERTS = 16            # configuration_llama4.py Llama4TextConfig num_local_experts
# DeepSeek-style MoE defaults of each configuration class (first_k_dense_replace, n_shared_experts):
# Glm4MoeConfig uses 1 and 1; DeepSeek's own configs always state them.
_MOE_DEFAULTS = {"glm4_moe": (1, 1)}
SUPPORTED_TYPES = tuple(sorted(list(_DECODER_TYPES) + list(_WRAPPER_TYPES) + ["gpt2", "gpt_bigcode", "bert", "gpt_neox",
                                                                             "chatglm"]))

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
    extra_warnings = ()
    vision = None
    from .vision import split_multimodal
    cfg = split_multimodal(cfg)             # Qwen2.5-VL's flat Hub config: its language model as text_config
    if "text_config" in cfg and isinstance(cfg["text_config"], dict) and "hidden_size" not in cfg:
        from .vision import vision_tower
        vision = vision_tower(cfg, prefix.rstrip("."))
        if isinstance(cfg.get("vision_config"), dict):
            extra_warnings = ("only the language model (text_config) is counted, as a text-only load such as "
                              "AutoModelForCausalLM gives; the vision encoder in vision_config is not",)
        outer = cfg.get("model_type")
        if outer is not None and not isinstance(outer, str):
            raise InputError(prefix + "model_type", "must be a string")
        cfg = dict(cfg["text_config"])          # multimodal wrappers keep the language model here
        if outer in _WRAPPER_TYPES and cfg.get("model_type") in (None, _WRAPPER_TYPES[outer]):
            cfg["model_type"] = _WRAPPER_TYPES[outer]
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
        spec = _read(r, name, model_type)
        if vision is not None:
            spec = replace(spec, vision=vision)
        return replace(spec, warnings=spec.warnings + extra_warnings) if extra_warnings else spec
    except InputError as exc:
        if exc.field.startswith("model.") and not exc.field.startswith(prefix):   # a ModelSpec rule the reader did not check
            raise InputError(prefix.rstrip("."), f"gives an inconsistent model: {exc.field[6:]} {exc.message}") from None
        raise


def _read(r: _Reader, name: str, model_type: str) -> ModelSpec:
    if model_type == "gpt2":
        return _gpt2(r, name)
    if model_type == "gpt_bigcode":
        return _gpt2(r, name, bigcode=True)
    if model_type == "bert":
        return _bert(r, name)
    if model_type == "gpt_neox":
        return _neox(r, name)
    if model_type == "chatglm":
        return _chatglm(r, name)
    if model_type in _WRAPPER_TYPES:            # a wrapper's type on a flat config: read as its text model
        model_type = _WRAPPER_TYPES[model_type]
    if model_type in _CONFIG_DEFAULTS:
        given = {k: v for k, v in r.cfg.items() if v is not None or k == "sliding_window"}   # null: no window
        filled = dict(_CONFIG_DEFAULTS[model_type])
        if "num_attention_heads" in given:      # the KV heads' default goes with the heads' default only
            filled.pop("num_key_value_heads", None)
        r = _Reader({**filled, **given}, r.prefix)
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
    if model_type == "llama4_text":
        return _chunked(r, n_layers)
    if model_type in ("qwen3_next", "cohere"):
        return 0, 0                 # their configuration classes have no sliding window: a stray field is not read
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
    if model_type in ("gemma3_text", "cohere2"):
        default = 6 if model_type == "gemma3_text" else 4
        pattern = require_int(r.field("sliding_window_pattern"), default if pattern is None else pattern,
                              maximum=MAX_LAYERS)
        return window, n_layers - n_layers // pattern
    return window, n_layers


def _chunked(r: _Reader, n_layers: int) -> tuple[int, int]:
    """Llama 4's chunked attention, read as a window of attention_chunk_size tokens: a token attends
    at most to the chunk_size tokens before it, and both engines and transformers' cache keep at most
    that many per layer (transformers HybridChunkedCache; vLLM ChunkedLocalAttention). The layers
    with RoPE are chunked (no_rope_layers[i] == 1; by default every fourth layer has no RoPE and is
    global: configuration_llama4.py no_rope_layer_interval 4)."""
    chunk = r.cfg.get("attention_chunk_size")
    if chunk is None:
        return 0, 0
    chunk = r.int("attention_chunk_size")
    flags = _layer_list(r, "no_rope_layers")
    if flags:                    # an empty list means the default, as in Llama4TextConfig (`if no_rope_layers`)
        if len(flags) < n_layers or not all(type(f) is int and f in (0, 1) for f in flags):
            raise InputError(r.field("no_rope_layers"), f"must be a list of 0 and 1, one per layer ({n_layers})")
        return chunk, sum(1 for f in flags[:n_layers] if f)
    interval = r.int("no_rope_layer_interval", 4, maximum=MAX_LAYERS)
    return chunk, sum(1 for i in range(n_layers) if (i + 1) % interval)


def _linear_attention(r: _Reader, n_layers: int) -> dict:
    """Qwen3-Next's Gated DeltaNet layers: those layer_types calls "linear_attention", or by default
    all but every full_attention_interval-th (configuration_qwen3_next.py)."""
    if r.has("layer_types"):
        types = _layer_list(r, "layer_types")
        if len(types) < n_layers or not all(t in ("linear_attention", "full_attention") for t in types):
            raise InputError(r.field("layer_types"), f"must list \"linear_attention\" or \"full_attention\" for each "
                                                     f"of the {n_layers} layers")
        linear = sum(1 for t in types[:n_layers] if t == "linear_attention")
    else:
        interval = r.int("full_attention_interval", 4, maximum=MAX_LAYERS)
        linear = sum(1 for i in range(n_layers) if (i + 1) % interval)
    if not linear:
        return {}
    if linear >= n_layers:
        if not r.has("layer_types") and not r.has("full_attention_interval"):
            raise InputError(r.field("full_attention_interval"), f"is not given, and its default (every 4th layer) "
                                                                 f"leaves no full-attention layer among the {n_layers}; "
                                                                 f"give it, or layer_types")
        raise InputError(r.field("layer_types" if r.has("layer_types") else "full_attention_interval"),
                         f"leaves no full-attention layer among the {n_layers}")
    return dict(linear_attn_layers=linear, linear_k_heads=r.int("linear_num_key_heads", 16),
                linear_v_heads=r.int("linear_num_value_heads", 32), linear_k_head_dim=r.int("linear_key_head_dim", 128),
                linear_v_head_dim=r.int("linear_value_head_dim", 128),
                linear_conv_kernel=r.int("linear_conv_kernel_dim", 4, maximum=64))


def _rope_theta_ok(r: _Reader) -> None:
    # Both spellings are accepted; only the type is checked, since memory does not depend on it.
    params = r.cfg.get("rope_parameters")
    if params is not None and not isinstance(params, dict):
        raise InputError(r.field("rope_parameters"), "must be an object")


def _decoder(r: _Reader, name: str, model_type: str, d: dict, warnings: tuple) -> ModelSpec:
    moe_routed = r.cfg.get("n_routed_experts") or r.cfg.get("num_experts") or r.cfg.get("num_local_experts")
    if model_type == "llama4_text" and r.cfg.get("num_local_experts") is None:
        moe_routed = _LLAMA4_EXPERTS             # Llama4TextConfig's default
    essentials = ["hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"]
    if not moe_routed or model_type in ("mixtral", "olmoe", "qwen2_moe", "qwen3_next", "glm4_moe", "llama4_text"):
        essentials.append("intermediate_size")
    if model_type == "llama4_text":
        essentials.append("intermediate_size_mlp")
    _missing(r, essentials)
    _rope_theta_ok(r)
    h = r.int("hidden_size")
    n_layers = r.int("num_hidden_layers")
    n_heads = r.int("num_attention_heads")
    n_kv = _kv_heads(r, "num_key_value_heads", n_heads)
    head_dim = max(1, h // n_heads) if model_type == "cohere2" else r.int("head_dim", max(1, h // n_heads))
    ffn = r.int("intermediate_size_mlp", 1) if model_type == "llama4_text" else r.int("intermediate_size", 1)
    attn_bias = r.bool("use_bias", True) if d.get("use_bias") else r.bool("attention_bias", False)
    if model_type == "glm4_moe" and r.bool("use_qk_norm", False):
        d = dict(d, qk_norm="per_head")
    if model_type == "cohere" and r.bool("use_qk_norm", False):
        d = dict(d, qk_norm="full")             # [heads, head_dim] and [kv_heads, head_dim] weights
    window, sliding_layers = _window(r, n_layers, model_type)
    chunked = model_type == "llama4_text" and window > 0
    spec = dict(
        name=name, family="decoder", model_type=model_type, n_layers=n_layers, hidden_size=h, ffn_size=ffn,
        n_heads=n_heads, n_kv_heads=n_kv, head_dim=head_dim, vocab_size=r.int("vocab_size"),
        max_positions=r.int("max_position_embeddings", 4096, maximum=MAX_POSITIONS),
        tied_embeddings=r.bool("tie_word_embeddings", d.get("tied", False)),
        gated_mlp=d.get("gated", True), qkv_bias=d.get("qkv_bias", attn_bias), o_bias=d.get("o_bias", attn_bias),
        mlp_bias=attn_bias if d.get("use_bias") else r.bool("mlp_bias", False),
        norm="gemma_rmsnorm" if d.get("gemma_norm") else d.get("norm", "rmsnorm"),
        norms_per_layer=d.get("norms_per_layer", 2), qk_norm=d.get("qk_norm", "none"),
        parallel_block=d.get("parallel", False),
        activation=_activation(r, d.get("activation", "silu")), fused_qkv=d.get("fused_qkv", False),
        fused_gate_up=d.get("fused_gate_up", False), attn_dropout=r.float("attention_dropout", 0.0),
        sliding_window=window, sliding_layers=sliding_layers, chunked_attention=chunked,
        final_logit_softcap=r.float("final_logit_softcapping", 0.0), attention_sinks=d.get("sinks", False),
        hidden_dropout=r.float("residual_dropout", 0.0) if model_type == "starcoder2" else 0.0,
        warnings=warnings,
    )
    if d.get("attn_output_gate"):
        spec.update(attn_output_gate=True, **_linear_attention(r, n_layers))
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
    elif model_type == "llama4_text":
        n_experts = r.int("num_local_experts", _LLAMA4_EXPERTS)
    else:
        n_experts = r.int("num_experts", alt="num_local_experts")
    k = r.int("num_experts_per_tok", 2, maximum=n_experts)
    expert_ffn = r.int("intermediate_size") if model_type == "llama4_text" else r.int("moe_intermediate_size", ffn)
    out = dict(n_experts=n_experts, experts_per_token=k, expert_ffn_size=expert_ffn)
    if model_type == "gpt_oss":
        out["expert_bias"] = True
    if model_type == "llama4_text":
        # Llama4TextMoe: one shared expert of intermediate_size beside the routed ones.
        out.update(n_shared_experts=1, shared_expert_ffn_size=expert_ffn)
        step = r.int("interleave_moe_layer_step", 1, maximum=MAX_LAYERS)
        pattern = set(range(step - 1, n_layers, step))
        if r.has("moe_layers"):
            layers = _layer_list(r, "moe_layers")
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in layers):
                raise InputError(r.field("moe_layers"), "must be a list of layer indices")
            given = {i for i in layers if 0 <= i < n_layers}
            step = step if given == pattern else 1        # another placement: counted, dense taken first
            pattern = given
        out.update(dense_layers=n_layers - len(pattern), moe_layer_step=step)
        return out
    if model_type in _DEEPSEEK_STYLE:
        first_default, shared_default = _MOE_DEFAULTS.get(model_type, (0, 0))
        out["n_shared_experts"] = r.int("n_shared_experts", shared_default, minimum=0)
        out["shared_expert_ffn_size"] = expert_ffn
        freq = r.int("moe_layer_freq", 1, maximum=MAX_LAYERS)
        first = min(r.int("first_k_dense_replace", first_default, minimum=0), n_layers)
        moe = sum(1 for i in range(first, n_layers) if (i - first) % freq == 0) if freq > 1 else n_layers - first
        out["dense_layers"] = n_layers - moe
    elif model_type in ("qwen2_moe", "qwen3_moe", "qwen3_next"):
        step = r.int("decoder_sparse_step", 1, maximum=MAX_LAYERS)
        only = _layer_list(r, "mlp_only_layers")
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in only):
            raise InputError(r.field("mlp_only_layers"), "must be a list of layer indices")
        only = set(only)                         # n_layers is already bounded by MAX_LAYERS
        moe = sum(1 for i in range(n_layers) if i not in only and (i + 1) % step == 0)
        out["dense_layers"] = n_layers - moe
        if step > 1 and not (only & set(range(n_layers))):
            out["moe_layer_step"] = step
        if model_type in ("qwen2_moe", "qwen3_next") and r.int("shared_expert_intermediate_size", 0, minimum=0):
            out.update(n_shared_experts=1, shared_expert_ffn_size=r.int("shared_expert_intermediate_size"),
                       shared_expert_gate=True)
    return out


def _activation(r: _Reader, default: str) -> str:
    key = next((k for k in ("hidden_activation", "hidden_act", "activation_function") if r.cfg.get(k)), "hidden_act")
    raw = r.cfg.get(key) or default
    if not isinstance(raw, str):
        raise InputError(r.field(key), "must be a string")
    if raw not in _ACTIVATION_NAMES:
        raise InputError(r.field(key), f"unknown activation {raw[:40]!r}; known: " + ", ".join(sorted(_ACTIVATION_NAMES)))
    return _ACTIVATION_NAMES[raw]


def _gpt2(r: _Reader, name: str, bigcode: bool = False) -> ModelSpec:
    """GPT-2's block (modeling_gpt2.py); with ``bigcode``, GPTBigCode's (StarCoder, SantaCoder): the same
    block with nn.Linear layers and, with multi_query (the default), one key/value head: c_attn =
    Linear(h, h + 2 x head_dim) (modeling_gpt_bigcode.py GPTBigCodeAttention; kv_dim = head_dim if
    multi_query else h), gelu_pytorch_tanh by default and a head tied unless the config says not."""
    _missing(r, ["n_embd", "n_layer", "n_head", "vocab_size"])
    h = r.int("n_embd")
    n_heads = r.int("n_head")
    if h % n_heads:
        raise InputError(r.field("n_head"), f"must divide n_embd ({h}), got {n_heads}")
    kv_heads = 1 if bigcode and r.bool("multi_query", True) else n_heads
    return ModelSpec(
        name=name, family="gpt2", model_type="gpt_bigcode" if bigcode else "gpt2", n_layers=r.int("n_layer"),
        hidden_size=h, ffn_size=r.int("n_inner", 4 * h), n_heads=n_heads, n_kv_heads=kv_heads,
        head_dim=max(1, h // n_heads), vocab_size=r.int("vocab_size"),
        max_positions=r.int("n_positions", 1024, maximum=MAX_POSITIONS),
        tied_embeddings=r.bool("tie_word_embeddings", True) if bigcode else True, gated_mlp=False, qkv_bias=True,
        o_bias=True, mlp_bias=True, norm="layernorm", activation=_activation(r, "gelu_pytorch_tanh" if bigcode else "gelu_new"),
        fused_qkv=True, learned_positions=True, attn_dropout=r.float("attn_pdrop", 0.1),
        hidden_dropout=r.float("resid_pdrop", 0.1),
    )


def _bert(r: _Reader, name: str) -> ModelSpec:
    _missing(r, ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"])
    h = r.int("hidden_size")
    n_heads = r.int("num_attention_heads")
    return ModelSpec(
        name=name, family="bert", model_type="bert", n_layers=r.int("num_hidden_layers"), hidden_size=h,
        ffn_size=r.int("intermediate_size"), n_heads=n_heads, n_kv_heads=n_heads, head_dim=max(1, h // n_heads),
        vocab_size=r.int("vocab_size"), max_positions=r.int("max_position_embeddings", 512, maximum=MAX_POSITIONS),
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
        max_positions=r.int("max_position_embeddings", 2048, maximum=MAX_POSITIONS), tied_embeddings=r.bool("tie_word_embeddings", False),
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
        vocab_size=r.int("padded_vocab_size", alt="vocab_size"), max_positions=r.int("seq_length", 8192, maximum=MAX_POSITIONS),
        tied_embeddings=False, gated_mlp=True, qkv_bias=r.bool("add_qkv_bias", True),
        o_bias=r.bool("add_bias_linear", False), mlp_bias=r.bool("add_bias_linear", False),
        norm="rmsnorm" if r.bool("rmsnorm", True) else "layernorm", activation="silu", fused_qkv=True,
        fused_gate_up=True, attn_dropout=r.float("attention_dropout", 0.0),
        hidden_dropout=r.float("hidden_dropout", 0.0),
    )
