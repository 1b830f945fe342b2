"""The vision encoder and projector of a multimodal checkpoint (its config.json's vision_config), which
a serving engine loads with the language model although a text-only transformers load does not.

Counts follow the modeling code (transformers 5.x) and are held to the Hub's safetensors totals by
tests/test_params.py (published_params_extra): (params split by tensor parallelism, params replicated).
vLLM shards the encoder's linears (models/siglip.py QKVParallelLinear / ColumnParallelLinear /
RowParallelLinear, 0.19) and replicates the embeddings, norms and the projector.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import require_int


@dataclass(frozen=True)
class VisionTower:
    """A vision encoder's size and the shape of one image through it."""

    sharded: int                 # parameters of the encoder's linears (split by tensor parallelism)
    replicated: int              # embeddings, norms, projector
    hidden: int = 0              # encoder width
    ffn: int = 0                 # encoder MLP width
    patches: int = 0             # patches of one image at the encoder's image size (0: not known)
    pixels: int = 0              # channels x height x width of one image
    tokens_per_image: int = 0    # language-model tokens one image becomes (0: not known)
    # The encoder's layers as training and transformers' generate run them (pycore/training/vision.py):
    kind: str = ""               # siglip | clip | qwen2_5_vl | llama4 | pixtral
    layers: int = 0              # encoder layers
    heads: int = 0
    text_hidden: int = 0         # the language model's width (the projector's output)
    full_attention_layers: int = 0   # Qwen2.5-VL: layers over the whole image (the others over windows)
    last_layer_unused: bool = False  # LLaVA: the projector reads an earlier layer's output (vision_feature_layer)

    @property
    def params(self) -> int:
        return self.sharded + self.replicated


def vision_tower(cfg: dict, where: str = "hf_config") -> VisionTower | None:
    """The vision tower of a multimodal config, or None."""
    sharded, replicated = vision_params(cfg, where)
    if not sharded + replicated:
        return None
    v, at = cfg["vision_config"], where + ".vision_config"
    H = cfg["text_config"]["hidden_size"]
    kind = v.get("model_type")
    if kind == "siglip_vision_model":
        # Gemma 3: one 896 x 896 image is (896 / 14)^2 patches, pooled to mm_tokens_per_image (256) tokens
        S, P = v["image_size"], v["patch_size"]
        tokens = require_int(where + ".mm_tokens_per_image", cfg.get("mm_tokens_per_image", 256), minimum=1,
                             maximum=_MAX)
        return VisionTower(sharded, replicated, v["hidden_size"], v["intermediate_size"], (S // P) ** 2, 3 * S * S,
                           tokens, "siglip", v["num_hidden_layers"], _ints(v, at, "num_attention_heads")[0], H)
    if kind == "clip_vision_model":
        # LLaVA: hidden_states[vision_feature_layer] (default -2) feeds the projector, and every layer runs
        # (modeling_llava.py:133-144)
        D, Iv, Lv, P, S, heads = _clip(v, at)
        unused = cfg.get("vision_feature_layer", -2) not in (-1, Lv)
        return VisionTower(sharded, replicated, D, Iv, (S // P) ** 2 + 1, 3 * S * S, 0, "clip", Lv, heads, H,
                           last_layer_unused=unused)
    if kind in _QWEN_VISION or (kind is None and cfg.get("model_type") in _QWEN_VISION):
        D, Iv, Lv, heads = _qwen(v, at)
        full = v.get("fullatt_block_indexes", QWEN_FULL_ATTENTION_LAYERS)
        return VisionTower(sharded, replicated, D, Iv, kind="qwen2_5_vl", layers=Lv, heads=heads, text_hidden=H,
                           full_attention_layers=len(full) if isinstance(full, (list, tuple)) else 0)
    return VisionTower(sharded, replicated, kind={"pixtral": "pixtral", "llama4_vision_model": "llama4"}.get(kind, ""))

# Qwen2.5-VL's vision config (configuration_qwen2_5_vl.py:48-65, transformers 5.25): the Hub's configs
# name it qwen2_5_vl (and in_chans), transformers qwen2_5_vl_vision (and in_channels).
_QWEN_VISION = ("qwen2_5_vl", "qwen2_5_vl_vision")
QWEN_FULL_ATTENTION_LAYERS = (7, 15, 23, 31)
QWEN_TEMPORAL_PATCH = 2
# CLIPVisionConfig defaults (configuration_clip.py, transformers 5.25); the Hub's LLaVA configs leave some out
_CLIP_DEFAULTS = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
                  "patch_size": 32, "image_size": 224}


def _clip(v: dict, at: str) -> list[int]:
    return _ints({**_CLIP_DEFAULTS, **{k: x for k, x in v.items() if x is not None}}, at, "hidden_size",
                 "intermediate_size", "num_hidden_layers", "patch_size", "image_size", "num_attention_heads")


def _qwen(v: dict, at: str) -> list[int]:
    return _ints({**v, "num_heads": v.get("num_heads", v.get("num_attention_heads"))}, at, "hidden_size",
                 "intermediate_size", "depth", "num_heads")

_MAX = 1 << 20


def _ints(v: dict, where: str, *keys: str) -> list[int]:
    return [require_int(f"{where}.{k}", v.get(k), minimum=1, maximum=_MAX) for k in keys]


def vision_params(cfg: dict, where: str = "hf_config") -> tuple[int, int]:
    """(TP-sharded, replicated) parameters of the vision tower and projector; (0, 0) without one."""
    v = cfg.get("vision_config")
    text = cfg.get("text_config")
    if not isinstance(v, dict) or not isinstance(text, dict):
        return 0, 0
    at = where + ".vision_config"
    H = require_int(where + ".text_config.hidden_size", text.get("hidden_size"), minimum=1, maximum=_MAX)
    kind = v.get("model_type")
    if kind == "siglip_vision_model":
        # Gemma 3: SiglipVisionModel without its head and Gemma3MultiModalProjector
        D, Iv, Lv, P, S = _ints(v, at, "hidden_size", "intermediate_size", "num_hidden_layers", "patch_size",
                                "image_size")
        linears = Lv * (4 * (D * D + D) + (D * Iv + Iv) + (Iv * D + D))       # q,k,v,out, fc1, fc2 with biases
        rest = 3 * P * P * D + D + (S // P) ** 2 * D + Lv * 4 * D + 2 * D      # patch conv, positions, LNs
        return linears, rest + D * H + D                                      # mm_input_projection, soft-emb norm
    if kind == "pixtral":
        # Mistral Small 3.1: PixtralVisionModel and Mistral3MultiModalProjector with its patch merger, no biases
        D, Iv, Lv, P, C = _ints(v, at, "hidden_size", "intermediate_size", "num_hidden_layers", "patch_size",
                                "num_channels")
        m = require_int(where + ".spatial_merge_size", cfg.get("spatial_merge_size", 2), minimum=1, maximum=64)
        linears = Lv * (4 * D * D + 3 * D * Iv)
        return linears, C * P * P * D + D + Lv * 2 * D + D + D * m * m * D + D * H + H * H
    if kind == "llama4_vision_model":
        D, Iv, Lv, P, S, C, pin, pout, vout = _ints(
            v, at, "hidden_size", "intermediate_size", "num_hidden_layers", "patch_size", "image_size",
            "num_channels", "projector_input_dim", "projector_output_dim", "vision_output_dim")
        linears = Lv * (4 * (D * D + D) + (D * Iv + Iv) + (Iv * D + D))
        rest = C * P * P * D + D + ((S // P) ** 2 + 1) * D + 4 * D + Lv * 4 * D + Iv * pin + pout ** 2
        return linears, rest + vout * H
    if kind == "clip_vision_model":
        # LLaVA: CLIPVisionModel (modeling_clip.py: class and position embeddings, pre/post LayerNorms, biased
        # q/k/v/out and fc1/fc2) and LlavaMultiModalProjector (modeling_llava.py:66-85, biased by default)
        D, Iv, Lv, P, S, _ = _clip(v, at)
        f = cfg.get("vision_feature_layer", -2)
        Din = D * (len(f) if isinstance(f, list) else 1)
        b = 1 if cfg.get("multimodal_projector_bias", True) else 0
        linears = Lv * (4 * (D * D + D) + (D * Iv + Iv) + (Iv * D + D))
        rest = D + 3 * P * P * D + ((S // P) ** 2 + 1) * D + 4 * D + Lv * 4 * D
        return linears, rest + Din * H + b * H + H * H + b * H
    if kind in _QWEN_VISION or (kind is None and cfg.get("model_type") in _QWEN_VISION):
        # Qwen2.5-VL (modeling_qwen2_5_vl.py:85-114, 185-200, 259-348): Conv3d patch embedding without bias,
        # RMSNorms, biased qkv/proj and gate/up/down, the patch merger's RMSNorm and two biased linears
        D, Iv, Lv, _ = _qwen(v, at)
        P = require_int(at + ".patch_size", v.get("patch_size", 14), minimum=1, maximum=_MAX)
        C = require_int(at + ".in_channels", v.get("in_channels", v.get("in_chans", 3)), minimum=1, maximum=64)
        m = require_int(at + ".spatial_merge_size", v.get("spatial_merge_size", 2), minimum=1, maximum=64)
        out = require_int(at + ".out_hidden_size", v.get("out_hidden_size", H), minimum=1, maximum=_MAX)
        linears = Lv * (3 * D * D + 3 * D + D * D + D + 2 * (D * Iv + Iv) + Iv * D + D)
        M = D * m * m
        return linears, C * QWEN_TEMPORAL_PATCH * P * P * D + Lv * 2 * D + D + M * M + M + M * out + out
    return 0, 0                     # another encoder (Qwen2-VL's): not counted; the answer says so


def split_multimodal(cfg):
    """A Qwen2.5-VL config as the Hub ships it (the language model's fields at the top, beside vision_config)
    in the text_config / vision_config form of transformers 5 (configuration_qwen2_5_vl.py:178-204); its
    language model is Qwen2's (biased q/k/v, multimodal rotary without parameters)."""
    if not isinstance(cfg, dict) or cfg.get("model_type") not in _QWEN_VISION or not isinstance(
            cfg.get("vision_config"), dict):
        return cfg
    text = cfg.get("text_config")
    if not isinstance(text, dict):
        text = {k: x for k, x in cfg.items() if k not in ("vision_config", "text_config")}
    text = {**text, "model_type": "qwen2"}
    return {"model_type": cfg["model_type"], "vision_config": cfg["vision_config"], "text_config": text,
            **{k: cfg[k] for k in ("_name_or_path", "tie_word_embeddings") if k in cfg}}
