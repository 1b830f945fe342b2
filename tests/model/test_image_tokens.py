"""Images as tokens (issue 24 item 5, the processor rules): each count by hand from the rule."""

import pytest

from pycore.errors import InputError
from pycore.model.image_tokens import rule_for, smart_resize, tokens_per_image


def test_gemma3_pools_every_image_to_256_tokens():
    assert tokens_per_image("gemma3", 100, 100) == tokens_per_image("gemma3", 3000, 4000) == 256


def test_llava_is_576_tokens_at_336_pixels_whatever_the_input():
    # (336 / 14)^2 = 24^2 = 576 patches; the CLS token is added and dropped again ("default" strategy)
    assert tokens_per_image("llava", 1080, 1920) == 24 * 24 == 576


def test_qwen2_vl_rounds_to_28_pixels_and_merges_2x2_patches():
    # 448 x 448: already a multiple of 28 -> (448 / 28)^2 = 16^2 = 256 tokens
    assert tokens_per_image("qwen2_vl", 448, 448) == 256
    # 480 x 640: round(480 / 28) = 17 -> 476, round(640 / 28) = 23 -> 644; 476 x 644 = 306,544 px is
    # within [3,136, 1,003,520] -> 17 x 23 = 391 tokens
    assert smart_resize(480, 640) == (476, 644) and tokens_per_image("qwen2_vl", 480, 640) == 391
    # 1080 x 1920 = 2,073,600 px is over max_pixels 1,003,520: beta = sqrt(2,073,600 / 1,003,520) = 1.43747;
    # floor(1080 / 1.43747 / 28) = 26 -> 728, floor(1920 / 1.43747 / 28) = 47 -> 1316: 26 x 47 = 1,222 tokens
    assert smart_resize(1080, 1920) == (728, 1316) and tokens_per_image("qwen2_vl", 1080, 1920) == 1222
    # 10 x 10 rounds to 0 x 0, under min_pixels 3,136: beta = sqrt(3,136 / 100) = 5.6 -> ceil(56 / 28) = 2
    # -> 56 x 56: 2 x 2 = 4 tokens
    assert tokens_per_image("qwen2_vl", 10, 10) == 4


def test_the_rule_is_read_from_the_configs_vision_model_type():
    assert rule_for({"model_type": "gemma3", "vision_config": {"model_type": "siglip_vision_model"}}) == "gemma3"
    assert rule_for({"model_type": "llava", "vision_config": {"model_type": "clip_vision_model"}}) == "llava"
    assert rule_for({"model_type": "qwen2_5_vl", "vision_config": {"depth": 32}}) == "qwen2_vl"
    assert rule_for({"model_type": "llama"}) is None


@pytest.mark.parametrize("rule,h,w", [("qwen2_vl", 1, 500), ("qwen2_vl", 0, 10), ("llava", 10, 10 ** 6),
                                      ("llama4", 336, 336)])
def test_bad_images_are_refused_naming_the_field(rule, h, w):
    with pytest.raises(InputError) as e:
        tokens_per_image(rule, h, w)
    assert e.value.field.startswith("workload.")
