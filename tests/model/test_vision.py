"""Multimodal checkpoints served (issue 20): the vision encoder and projector the engines load. The
expected counts are the catalog's published_params_extra "vision" parts, which tests/model/test_params.py
holds to the Hub's safetensors totals (published total minus the language model)."""

import pytest

from pycore.api import estimate_dict
from pycore.data.catalog import model_entries
from pycore.model.vision import vision_params

VLMS = [mid for mid, e in model_entries().items() if "vision_config" in e["hf_config"]]


@pytest.mark.parametrize("mid", VLMS)
def test_the_vision_count_is_the_hubs_total_less_the_language_model(mid):
    entry = model_entries()[mid]
    published = [p["params"] for p in entry.get("published_params_extra", []) if p["part"] == "vision"]
    assert published, mid
    assert sum(vision_params(entry["hf_config"])) == published[0]


def _weights(model, engine, tp):
    field = "tensor_parallel_size" if engine == "vllm" else "tp_size"
    r = estimate_dict({"model": model, "gpu": "h100-sxm-80gb",
                       "workload": {"mode": "serve", "engine": engine, field: tp}})
    assert r["status"] == "ok", r
    return r["result"]["breakdown"]


def _part(tree, name):
    for child in tree.get("children", []):
        if child["name"] == name:
            return child["bytes"]
        found = _part(child, name)
        if found is not None:
            return found
    return None


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_gemma3_serving_loads_its_siglip_tower(engine):
    # Gemma 3 4B: 411,342,192 encoder-linear parameters split by TP, 8,474,112 replicated, bf16
    assert _part(_weights("gemma-3-4b-it", engine, 1), "vision encoder and projector") == 419_816_304 * 2
    assert _part(_weights("gemma-3-4b-it", engine, 2), "vision encoder and projector") == \
        (411_342_192 // 2 + 8_474_112) * 2
    assert _part(_weights("gemma-3-1b", engine, 1), "vision encoder and projector") is None


def _activation(**workload):
    r = estimate_dict({"model": "gemma-3-4b-it", "gpu": "h100-sxm-80gb",
                       "workload": {"mode": "serve", "engine": "vllm", "version": "0.19.0", **workload}})
    assert r["status"] == "ok", r
    act = next(c for c in r["result"]["breakdown"]["children"] if c["name"].startswith("activation"))
    return {c["name"]: c["bytes"] for c in act["children"]}


def test_the_encoder_cache_stays_through_the_sampler_run():
    # encoder budget max(8192, 256) // 256 = 32 images; their outputs 32 x 256 tokens x 2560 x 2 bytes
    parts = _activation(max_num_batched_tokens=8192, max_model_len=8192)
    assert parts["encoder cache (32 images)"] == 41_943_040
    assert any(k.startswith("sampler on 1024 rows") for k in parts)


def test_the_encoder_run_is_the_peak_when_few_rows_are_sampled():
    # 8 sequences: the sampler holds 8 x 262,208 x 14 bytes (29 MB); the encoder on 32 images of 4,096
    # patches: pixels 32 x 3 x 896 x 896 x 2 = 154,140,672; hidden and residual 2 x 32 x 4,096 x 1,152 x 2
    # = 603,979,776; fc1 output and activation 2 x 32 x 4,096 x 4,304 x 2 = 2,256,535,552
    parts = _activation(max_num_batched_tokens=8192, max_num_seqs=8, max_model_len=8192)
    assert sum(parts.values()) == 154_140_672 + 603_979_776 + 2_256_535_552
