"""Multimodal checkpoints served (issue 20): the vision encoder and projector the engines load. The
expected counts are the catalog's published_params_extra "vision" parts, which tests/test_params.py
holds to the Hub's safetensors totals (published total minus the language model)."""

import pytest

from pycore.api import estimate_dict
from pycore.catalog import model_entries
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
