"""The installed transformers' DynamicSlidingWindowLayer against the sliding-cache-keeps-prompt-at-prefill rule
(pycore/versions.py): the storage its keys and values hold after the prompt pass and after one decode step,
counted on the real cache objects (CPU, a tiny Gemma 2 configuration), equals pycore's kv_cache_bytes."""

from dataclasses import replace

import torch
import transformers
from transformers import DynamicCache, Gemma2Config

from pycore.data.catalog import catalog_model
from pycore.serving.hf import kv_cache_bytes
from pycore.versions import holds, version_tuple


def _held_bytes(cache) -> int:
    """Bytes of the storages the cache's tensors keep alive (a view keeps its whole base)."""
    seen = {}
    for layer in cache.layers:
        for t in (layer.keys, layer.values):
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def test_sliding_layers_hold_the_whole_prompt_until_the_first_decode_step():
    assert holds("sliding-cache-keeps-prompt-at-prefill", version_tuple(transformers.__version__))
    cfg = Gemma2Config(num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1, head_dim=8, hidden_size=16,
                       intermediate_size=32, vocab_size=64, sliding_window=6, max_position_embeddings=64)
    cache = DynamicCache(config=cfg)
    b, s, kv, hd = 2, 20, 1, 8
    for i in range(cfg.num_hidden_layers):
        cache.update(torch.zeros(b, kv, s, hd, dtype=torch.bfloat16), torch.zeros(b, kv, s, hd, dtype=torch.bfloat16), i)
    prompt = _held_bytes(cache)
    for i in range(cfg.num_hidden_layers):
        cache.update(torch.zeros(b, kv, 1, hd, dtype=torch.bfloat16), torch.zeros(b, kv, 1, hd, dtype=torch.bfloat16), i)
    step = _held_bytes(cache)
    m = replace(catalog_model("gemma-2-2b"), n_layers=4, sliding_layers=2, sliding_window=6, n_kv_heads=1,
                head_dim=8, n_heads=2, hidden_size=16)
    assert prompt == kv_cache_bytes(m, b, s, 2, whole_prompt=True)
    # after one decode step each sliding layer holds the window (5 kept + 1 new), each full layer s + 1 tokens
    assert step == kv_cache_bytes(m, b, s + 1, 2)
