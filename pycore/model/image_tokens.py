"""Images as language-model tokens: how many tokens one image of a given size becomes, by each model
family's processor rule (transformers 5.25, the processors a training or inference script runs).

- Gemma 3 (vision model_type siglip_vision_model): every image is resized to the encoder's 896 x 896
  and pooled to mm_tokens_per_image tokens (256), whatever its size (Gemma3Processor image_seq_length).
- LLaVA 1.5 (clip_vision_model): the CLIP processor resizes the shortest edge to 336 and crops 336 x
  336; (336 / 14)^2 patches + num_additional_image_tokens (1, the CLS) - 1 ("default" feature
  strategy drops the CLS) = 576 (models/llava/processing_llava.py:92-95).
- Qwen2-VL / Qwen2.5-VL (qwen2_vl, qwen2_5_vl): smart_resize to multiples of patch x merge = 28 within
  [min_pixels 56 x 56, max_pixels 28 x 28 x 1280], then 14-pixel patches merged 2 x 2: (h / 28) x
  (w / 28) tokens (models/qwen2_vl/image_processing_qwen2_vl.py:63-89, 96-105).
Llama 4's tiling (up to 16 tiles of 336 px plus a global tile, 144 tokens each) is not modelled here.
"""

from __future__ import annotations

import math

from ..errors import InputError

GEMMA3_TOKENS_PER_IMAGE = 256          # Gemma 3 config mm_tokens_per_image
LLAVA_IMAGE_SIZE, LLAVA_PATCH = 336, 14
QWEN_PATCH, QWEN_MERGE = 14, 2         # Qwen2VLImageProcessor patch_size, merge_size
QWEN_MIN_PIXELS, QWEN_MAX_PIXELS = 56 * 56, 28 * 28 * 1280
MAX_ASPECT = 200                       # smart_resize refuses a longer side over 200 x the shorter
MAX_SIDE = 1 << 16

RULES = ("gemma3", "llava", "qwen2_vl")
VISION_RULES = {"siglip_vision_model": "gemma3", "clip_vision_model": "llava", "qwen2_vl": "qwen2_vl",
                "qwen2_5_vl": "qwen2_vl"}


def smart_resize(height: int, width: int, factor: int = QWEN_PATCH * QWEN_MERGE, min_pixels: int = QWEN_MIN_PIXELS,
                 max_pixels: int = QWEN_MAX_PIXELS, where: str = "workload.image_size") -> tuple[int, int]:
    """Qwen2-VL's resize: both sides multiples of ``factor``, the area within [min_pixels, max_pixels],
    the aspect ratio kept as closely as it can be."""
    if max(height, width) / min(height, width) > MAX_ASPECT:
        raise InputError(where, f"the image's aspect ratio must be under {MAX_ASPECT} (Qwen2-VL's processor "
                                "refuses it)")
    h = round(height / factor) * factor
    w = round(width / factor) * factor
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def tokens_per_image(rule: str, height: int, width: int, where: str = "workload.image_size") -> int:
    """Language-model tokens one ``height`` x ``width`` image becomes under ``rule`` (RULES)."""
    for side in (height, width):
        if not isinstance(side, int) or isinstance(side, bool) or not 1 <= side <= MAX_SIDE:
            raise InputError(where, f"image sides must be whole numbers of pixels from 1 to {MAX_SIDE}")
    if rule == "gemma3":
        return GEMMA3_TOKENS_PER_IMAGE
    if rule == "llava":
        return (LLAVA_IMAGE_SIZE // LLAVA_PATCH) ** 2
    if rule == "qwen2_vl":
        h, w = smart_resize(height, width, where=where)
        return (h // (QWEN_PATCH * QWEN_MERGE)) * (w // (QWEN_PATCH * QWEN_MERGE))
    raise InputError(where.rsplit(".", 1)[0] + ".model", f"no image-token rule for {rule!r} (known: "
                                                         f"{', '.join(RULES)})")


def rule_for(hf_config: dict) -> str | None:
    """The rule for a multimodal config.json by its vision_config model_type (None: text-only or unknown)."""
    v = hf_config.get("vision_config") if isinstance(hf_config, dict) else None
    if not isinstance(v, dict):
        return None
    return VISION_RULES.get(v.get("model_type")) or VISION_RULES.get(hf_config.get("model_type"))
