"""vLLM's weights of a model with learned positions: GPT-2 loads every parameter transformers counts
(124,439,808, shared/calibration's n_params for gpt2) in 16 bits, its position embeddings (wpe, a plain
nn.Embedding in vLLM's gpt2.py) and the final LayerNorm's weight and bias included, plus the vocabulary
padded to a multiple of 64 (vocab_parallel_embedding.py DEFAULT_VOCAB_PADDING_SIZE): 50,257 -> 50,304 rows."""

from pycore.api import estimate_dict


def _weights(model: str) -> int:
    resp = estimate_dict({"model": model, "gpu": {"memory_gib": 80}, "workload": {"mode": "serve", "engine": "vllm"}})
    assert resp["status"] == "ok", resp
    return next(c["bytes"] for c in resp["result"]["breakdown"]["children"] if c["name"] == "weights")


def test_gpt2_loads_every_parameter_and_the_padded_vocabulary():
    assert _weights("gpt2") == 124_439_808 * 2 + (50_304 - 50_257) * 768 * 2
