"""Partial-FP8 checkpoints (issue 20): modules a config's modules_to_not_convert / ignored_layers lists stay
16-bit. Expected differences worked by hand for Llama-3.1-8B (hidden 4096, 8 KV heads of 128, 32 layers)
in fp8 with 128x128 blocks: an attention layer holds q 4096x4096, k and v 4096x1024, o 4096x4096 =
41,943,040 weights; fp8 stores 1 byte each plus an fp32 scale per block (1024 + 256 + 256 + 1024 blocks =
10,240 bytes); 16 bits store 2 bytes each."""

import copy
import json

import pytest

from pycore.api import estimate_dict
from pycore.data.catalog import model_entries
from pycore.model.unconverted import kept_layers, read_entries

FP8 = {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}


def _weights(extra: dict) -> int:
    cfg = copy.deepcopy(model_entries()["llama-3.1-8b"]["hf_config"])
    cfg["quantization_config"] = {**FP8, **extra}
    r = estimate_dict({"hf_config": json.dumps(cfg), "gpu": "h100-sxm-80gb",
                       "workload": {"mode": "serve", "engine": "vllm", "max_model_len": 4096}})
    assert r["status"] == "ok", r
    return r["result"]["report"]["weights_bytes"]


def test_self_attn_kept_in_16_bits_on_every_layer():
    # per layer 41,943,040 x 2 - (41,943,040 + 10,240) = 41,932,800 bytes more; x 32 layers
    assert _weights({"modules_to_not_convert": ["self_attn"]}) - _weights({}) == 32 * 41_932_800


def test_named_layers_only():
    # q_proj of layers 0 and 1 (vLLM's exact names): 2 x (16,777,216 x 2 - 16,777,216 - 4,096)
    names = ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"]
    assert _weights({"ignored_layers": names}) - _weights({}) == 2 * 16_773_120


def test_fused_names_match_their_shards_and_other_layers_do_not():
    entries = read_entries(["model.layers.3.mlp.gate_proj", "model.layers.40.mlp.up_proj", "lm_head"], "x")
    assert kept_layers(entries, "mlp", "gate_up_proj", 0, 32) == 1       # layer 3 (layer 40 is not in 0..31)
    assert kept_layers(entries, "mlp", "gate_up_proj", 8, 8) == 0        # a pipeline stage of layers 8..15
    assert kept_layers(entries, "attention", "q_proj", 0, 32) == 0


@pytest.mark.parametrize("bad", ["self_attn", [1, 2], ["x" * 400]])
def test_bad_lists_are_refused(bad):
    cfg = copy.deepcopy(model_entries()["llama-3.1-8b"]["hf_config"])
    cfg["quantization_config"] = {**FP8, "modules_to_not_convert": bad}
    r = estimate_dict({"hf_config": json.dumps(cfg), "workload": {"mode": "serve", "engine": "vllm"}})
    assert r["status"] == "error" and "modules_to_not_convert" in r["errors"][0]["field"]
