"""Multimodal models in training and transformers' generate (issue 24 item 5): image tokens in the
sequence, the vision encoder's states, what its layers keep, and the refusals. Expected values are
worked by hand below (the encoder's sizes are Gemma 3's SigLIP and Qwen2.5-VL's published configs);
tests/integration/test_vision_saved.py holds the same rules to autograd on tiny configs."""

from dataclasses import replace

import pytest

from pycore.api import estimate_dict
from pycore.data.catalog import model_entries
from pycore.cli import _parser
from pycore.cli.args import build_request
from pycore.errors import InputError
from pycore.estimate import estimate
from pycore.request.links import to_command
from pycore.model.hfconfig import read_hf_config
from pycore.training.vision import encoder_saved, vision_states
from pycore.training.workload import Framework, Hardware, Precision, Workload

H100 = Hardware("H100", 80 * 2 ** 30)
GEMMA = model_entries()["gemma-3-4b-it"]["hf_config"]
# Qwen2.5-VL-7B-Instruct's config.json as the Hub ships it (the language model's fields at the top)
QWEN = {"model_type": "qwen2_5_vl", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
        "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 128000,
        "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "rope_theta": 1e6,
        "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                          "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
                          "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                          "fullatt_block_indexes": [7, 15, 23, 31], "temporal_patch_size": 2}}


def _request(model, **workload):
    req = {"model": model, "gpu": "h100-sxm-80gb", "workload": {"batch_size": 1, "seq_len": 1024, **workload}}
    if isinstance(model, dict):
        req = {**req, "model": None, "hf_config": model}
        del req["model"]
    return estimate_dict(req)


def test_a_text_only_model_refuses_images_naming_the_field():
    r = _request("llama-3.1-8b", images_per_sample=1)
    assert r["status"] == "error" and r["errors"][0]["field"] == "workload.images_per_sample"
    assert "text-only" in r["errors"][0]["message"]


def test_llama4_is_refused_by_name_not_run_as_another_encoder():
    r = _request("llama-4-scout-17b-16e", images_per_sample=1, mode="inference")
    assert r["status"] == "error" and "Llama 4" in r["errors"][0]["message"]


def test_an_image_size_without_images_and_qwen_without_a_size_are_errors():
    r = _request("gemma-3-4b-it", image_height=896, image_width=896)
    assert r["errors"][0]["field"] == "workload.image_height"
    r = _request(QWEN, images_per_sample=1)
    assert r["errors"][0]["field"] == "workload.image_height" and "smart_resize" in r["errors"][0]["message"]


def test_image_tokens_join_the_sequence():
    m = read_hf_config(GEMMA)
    e = estimate(m, Workload(mode="lora", seq_len=1024, images_per_sample=2), Precision(), H100)
    # Gemma 3: 256 tokens per image whatever its size -> 1024 + 2 x 256 = 1536
    assert e.workload.seq_len == 1536
    assert any("1024 text tokens + 2 images x 256 image tokens = 1536" in w for w in e.warnings)
    m = read_hf_config(QWEN)
    e = estimate(m, Workload(mode="lora", seq_len=1024, images_per_sample=1, image_height=1080, image_width=1920),
                 Precision(), H100)
    # smart_resize(1080, 1920) = 728 x 1316 -> 26 x 47 = 1,222 tokens (docs/methods.md#image-tokens)
    assert e.workload.seq_len == 1024 + 1222


def test_the_encoders_weights_are_counted_in_every_moment():
    m = read_hf_config(GEMMA)
    published = next(p["params"] for p in model_entries()["gemma-3-4b-it"]["published_params_extra"]
                     if p["part"] == "vision")                     # the Hub's safetensors total less the LM
    e = estimate(m, Workload(mode="lora", images_per_sample=1), Precision(), H100)
    for snap in e.snapshots:
        weights = dict(snap.parts)["weights"]
        assert weights["vision encoder and projector"] == 2 * published
    assert e.peak.total() == max(s.total() for s in e.snapshots)


def test_default_lora_targets_adapt_siglips_q_k_v_too():
    # peft matches module names by suffix: q_proj, k_proj, v_proj are SigLIP's attention names as well.
    # 27 layers x 3 linears x r 16 x (1152 in + 1152 out) = 2,985,984 adapter parameters, fp32
    st = vision_states(read_hf_config(GEMMA), Workload(mode="lora", images_per_sample=1), Precision(), Framework())
    assert st.trainable == 27 * 3 * 16 * (1152 + 1152) == 2_985_984
    assert st.weights["vision encoder LoRA adapters"] == 4 * 2_985_984
    assert st.optimizer_states == 2 * 4 * 2_985_984                   # AdamW: exp_avg, exp_avg_sq


def test_full_training_trains_the_encoder():
    m = read_hf_config(GEMMA)
    st = vision_states(m, Workload(mode="full", images_per_sample=1), Precision(), Framework())
    assert st.trainable == m.vision.params and st.optimizer_states == 2 * 2 * m.vision.params


def test_one_siglip_layer_keeps_what_the_hand_count_gives():
    # Full training, bf16, SDPA (flash), 1 sequence with 1 image: T = 4096 patches, D = 1152, I = 4304,
    # 16 heads. Per layer: norm1 input, output (2 x 2TD), stats (8T); q, k, v (6TD); log-sum-exp
    # (4 x 16 T); the output (2TD); norm2 input, output (2 x 2TD), stats (8T); GELU input and fc2's input (2 x 2TI)
    m = read_hf_config(GEMMA)
    layers, kept = encoder_saved(m, Workload(mode="full", images_per_sample=1), Precision(), Framework(), False)
    T, D, I = 4096, 1152, 4304
    per_layer = 16 * T * D + 16 * T + 64 * T + 4 * T * I
    assert layers[0].count == 27 and layers[0].saved_total() == per_layer
    # under checkpointing each layer keeps its bf16 input: 27 x 2TD
    _, ckpt = encoder_saved(m, Workload(mode="full", images_per_sample=1), Precision(), Framework(), True)
    assert ckpt["vision encoder checkpointed layer inputs"] == 27 * 2 * T * D


def test_a_frozen_encoder_keeps_nothing_without_checkpointing_and_its_inputs_with_it():
    # Qwen2.5-VL's attention is qkv and proj: the default targets (q/k/v/o_proj) adapt no encoder linear
    m = read_hf_config(QWEN)
    w = Workload(mode="lora", images_per_sample=1, image_height=448, image_width=448)
    assert encoder_saved(m, w, Precision(), Framework(), False) == ([], {})
    # with checkpointing, enable_input_require_grads puts the encoder on backward's path: 32 layers keep
    # their bf16 input, 448 x 448 = 32 x 32 patches = 1024 rows of 1280
    _, kept = encoder_saved(m, replace(w, gradient_checkpointing=True), Precision(), Framework(), True)
    assert kept["vision encoder checkpointed layer inputs"] == 32 * 2 * 1024 * 1280


def test_the_encoder_has_its_own_moments_and_inference_its_forward():
    m = read_hf_config(GEMMA)
    e = estimate(m, Workload(mode="full", images_per_sample=4, gradient_checkpointing=True), Precision(), H100)
    moments = [s.moment for s in e.snapshots]
    assert "vision encoder's last layer forward" in moments and "vision encoder's first layer backward" in moments
    e = estimate(m, Workload(mode="inference", images_per_sample=4, new_tokens=16), Precision(), H100)
    first = e.snapshots[0]
    assert first.moment == "vision encoder's forward on the images"
    temps = dict(first.parts)["temporaries"]
    # 4 images of 3 x 896 x 896 pixels in bf16
    assert temps["image pixel values (4 images)"] == 2 * 4 * 3 * 896 * 896


def test_images_raise_the_peak_over_the_text_alone():
    m = read_hf_config(GEMMA)
    text = estimate(m, Workload(mode="full", seq_len=1536), Precision(), H100)
    both = estimate(m, Workload(mode="full", seq_len=1024, images_per_sample=2), Precision(), H100)
    assert both.peak_allocated_bytes > text.peak_allocated_bytes


def test_the_cli_takes_images_and_a_size_and_the_command_comes_back():
    a = _parser().parse_args(["estimate", "--model", "gemma-3-4b-it", "--images", "2", "--image-height", "1080",
                              "--image-width", "1920"])
    req, problem = build_request(a)
    assert problem is None
    assert req["workload"]["images_per_sample"] == 2 and req["workload"]["image_height"] == 1080
    command = to_command(req)
    assert "--images 2" in command and "--image-height 1080" in command and "--image-width 1920" in command
    with pytest.raises(InputError):
        estimate(read_hf_config(GEMMA), Workload(images_per_sample=1, mode="qlora"), Precision(), H100)
