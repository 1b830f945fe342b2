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

    @property
    def params(self) -> int:
        return self.sharded + self.replicated


def vision_tower(cfg: dict, where: str = "hf_config") -> VisionTower | None:
    """The vision tower of a multimodal config, or None."""
    sharded, replicated = vision_params(cfg, where)
    if not sharded + replicated:
        return None
    v = cfg["vision_config"]
    if v.get("model_type") == "siglip_vision_model":
        # Gemma 3: one 896 x 896 image is (896 / 14)^2 patches, pooled to mm_tokens_per_image (256) tokens
        S, P = v["image_size"], v["patch_size"]
        tokens = require_int(where + ".mm_tokens_per_image", cfg.get("mm_tokens_per_image", 256), minimum=1,
                             maximum=_MAX)
        return VisionTower(sharded, replicated, v["hidden_size"], v["intermediate_size"], (S // P) ** 2, 3 * S * S,
                           tokens)
    return VisionTower(sharded, replicated)

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
    return 0, 0                     # another encoder (CLIP in LLaVA, Qwen2-VL's): not counted; the answer says so
