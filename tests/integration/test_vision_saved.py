"""The vision encoder and projector (issue 24 item 5) against transformers 5.25 on tiny configs (CPU, fp32).

Parameters: the real model's named parameters under its vision tower and projector, and the rest (the
language model), against pycore/model/vision.py and the text reader.

Saved activations: the model's get_image_features runs in train mode under
torch.autograd.graph.saved_tensors_hooks, and the tensors still alive after it are summed (storages counted
once; parameters and buffers left out), as tests/integration/test_peft_saved.py does. Two cases: full
training (every parameter requires grad) and a frozen encoder whose input needs a gradient
(enable_input_require_grads, which peft calls under gradient checkpointing). The core's encoder_saved
must match to within 128 bytes (Gemma 3's projector keeps its 1 + weight vector, not modelled), except for
what only CUDA keeps: eager
attention's dropout at p = 0 is a no-op on the CPU (ATen Dropout.cpp returns the input) but runs
native_dropout on CUDA, which keeps a bool mask and its output, both modelled (activations.py).
"""

import weakref

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pycore.model.hfconfig import read_hf_config  # noqa: E402
from pycore.model.vision import vision_params  # noqa: E402
from pycore.model.params import total_params  # noqa: E402
from pycore.training.vision import encoder_saved  # noqa: E402
from pycore.training.workload import Framework, Precision, Workload  # noqa: E402

TEXT = dict(model_type="llama", hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=128, max_position_embeddings=256)
VISION = dict(hidden_size=32, intermediate_size=48, num_attention_heads=4)
CONFIGS = {
    "llava": dict(model_type="llava", text_config=TEXT, image_token_index=127, vision_config=dict(
        VISION, model_type="clip_vision_model", num_hidden_layers=3, image_size=56, patch_size=14)),
    "gemma3": dict(model_type="gemma3", mm_tokens_per_image=16, image_token_index=299, boi_token_index=297,
                   eoi_token_index=298,
                   text_config=dict(TEXT, model_type="gemma3_text", head_dim=16, vocab_size=300),
                   vision_config=dict(VISION, model_type="siglip_vision_model", num_hidden_layers=3, image_size=112,
                                      patch_size=14, vision_use_head=False)),
    "qwen2_5_vl": dict(model_type="qwen2_5_vl",
                       text_config=dict(TEXT, model_type="qwen2_5_vl_text", vocab_size=160000,
                                        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}),
                       vision_config=dict(hidden_size=32, intermediate_size=48, num_heads=4, model_type="qwen2_5_vl",
                                          depth=3, out_hidden_size=64, fullatt_block_indexes=[1])),
}
IMAGES, HEIGHT, WIDTH = 2, 224, 280      # Qwen2.5-VL: 224 x 280 is a multiple of 28 already (8 x 10 merge units)


def _model(kind, attention="sdpa"):
    conf = transformers.AutoConfig.for_model(**CONFIGS[kind])
    conf._attn_implementation = conf.vision_config._attn_implementation = attention
    torch.manual_seed(0)
    return transformers.AutoModelForImageTextToText.from_config(conf).float().train()


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_vision_and_language_parameters_match_transformers(kind):
    model = _model(kind)
    named = dict(model.named_parameters())
    vision = sum(p.numel() for n, p in named.items() if any(k in n for k in ("vision_tower", "visual", "projector")))
    sharded, replicated = vision_params(CONFIGS[kind])
    assert sharded + replicated == vision
    assert total_params(read_hf_config(CONFIGS[kind])) == sum(p.numel() for p in named.values()) - vision


def _pixels(kind):
    if kind == "qwen2_5_vl":
        gh, gw = HEIGHT // 14, WIDTH // 14
        return dict(pixel_values=torch.randn(IMAGES * gh * gw, 3 * 2 * 14 * 14),
                    image_grid_thw=torch.tensor([[1, gh, gw]] * IMAGES))
    side = CONFIGS[kind]["vision_config"]["image_size"]
    return dict(pixel_values=torch.randn(IMAGES, 3, side, side))


def _kept_by_autograd(kind, attention, full):
    model = _model(kind, attention)
    if not full:
        model.requires_grad_(False)
        model.enable_input_require_grads()
    own = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    refs = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: refs.append(weakref.ref(t)) or t, lambda t: t):
        features = model.model.get_image_features(**_pixels(kind)).pooler_output
    alive = {}
    for ref in refs:
        t = ref()
        if t is not None and t.untyped_storage().data_ptr() not in own:
            alive[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    assert features[0].requires_grad
    return sum(alive.values())


def _modelled(kind, attention, full):
    qwen = kind == "qwen2_5_vl"
    w = Workload(mode="full" if full else "lora", batch_size=1, seq_len=16, images_per_sample=IMAGES,
                 attention=attention, gradient_checkpointing=not full, lora_targets=None if full else ["nothing"],
                 image_height=HEIGHT if qwen else None, image_width=WIDTH if qwen else None)
    _, kept = encoder_saved(read_hf_config(CONFIGS[kind]), w, Precision(weights="fp32"), Framework(), False)
    cuda_only = sum(v for k, v in kept.items() if k in ("encoder attention scores: dropout mask",
                                                         "encoder attention scores: probabilities"))
    return sum(kept.values()) - cuda_only


@pytest.mark.parametrize("full", [True, False], ids=["full", "frozen-input-grad"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_what_the_encoder_keeps_matches_autograd(kind, attention, full):
    measured = _kept_by_autograd(kind, attention, full)
    modelled = _modelled(kind, attention, full)
    assert abs(measured - modelled) <= 128, (measured, modelled)
    assert measured > 50_000                     # the layers' tensors are there to be counted
