"""SGLang keeps the rotary cos/sin cache in float32 on CUDA, inside 'Load weight end ... mem usage' (issue 20)."""

from pycore.api import estimate_dict


def _weights(model):
    req = {"model": model, "gpu": "h100-sxm-80gb",
           "workload": {"mode": "serve", "engine": "sglang", "version": "0.5.10", "context_length": 4096}}
    out = estimate_dict(req)
    assert out["status"] == "ok", out
    return out["result"]["report"]["weights_bytes"]


def test_rotary_cache_is_max_positions_by_head_dim_in_fp32():
    from pycore.data.catalog import catalog_model
    from pycore.serving.sglang import rotary_cache_bytes
    m = catalog_model("llama-3.1-8b")
    # Llama-3.1-8B: max_position_embeddings 131,072 x head_dim 128 x 4 bytes = 64 MiB, one cache for all layers
    assert rotary_cache_bytes(m) == 131072 * 128 * 4 == 64 * 2 ** 20
    q = catalog_model("qwen2.5-0.5b")
    # Qwen2.5-0.5B: 32,768 x 64 x 4 = 8 MiB
    assert rotary_cache_bytes(q) == 8 * 2 ** 20


def test_the_loaded_memory_is_the_weights_plus_the_cache():
    # Qwen2.5-0.5B: 494,032,768 parameters in bf16 (embeddings tied) = 988,065,536 bytes, plus 8 MiB
    assert _weights("qwen2.5-0.5b") == 494_032_768 * 2 + 8 * 2 ** 20
