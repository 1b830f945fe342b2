"""HF inference's moments, each on its own (pycore/serving/hf.py): the prompt's masks, generate's KV cache,
the prompt pass, the decode steps and the sampled logits; and estimate.py hands inference to serving/hf.py.
Llama-3.1-8B: 32 layers, 8 KV heads of 128, vocabulary 128,256; a bf16 K and V per token and layer is
2 x 8 x 128 x 2 = 4,096 bytes, 131,072 bytes over the 32 layers."""

import importlib

import pytest

from pycore.request.parse import parse_request
from pycore.serving import hf
from pycore.training.context import make_context

PER_TOKEN = 2 * 8 * 128 * 2 * 32
estimate_module = importlib.import_module("pycore.estimate")     # pycore.estimate is also the function


def _ctx(model: str, **workload):
    req = parse_request({"model": model, "workload": {"mode": "inference", **workload}})
    return make_context(req.model, req.workload, req.precision, req.framework), req


def test_eager_attention_keeps_a_float_mask_and_two_for_models_with_both_layer_kinds():
    ctx, req = _ctx("llama-3.1-8b", batch_size=2, seq_len=1000, attention="eager")
    assert hf.prompt_masks(ctx, req.model) == {"attention mask (b x s x s)": 2 * 2 * 1000 * 1000}
    ctx, req = _ctx("gemma-2-2b", batch_size=2, seq_len=1000, attention="eager")
    assert sum(hf.prompt_masks(ctx, req.model).values()) == 2 * (2 * 2 * 1000 * 1000)
    ctx, req = _ctx("llama-3.1-8b", batch_size=2, seq_len=1000, attention="sdpa")
    assert hf.prompt_masks(ctx, req.model) == {}


def test_the_dynamic_cache_grows_and_the_static_one_is_whole_from_the_start():
    ctx, req = _ctx("llama-3.1-8b", batch_size=1, seq_len=1000, new_tokens=25)
    dynamic = hf.GenerateCache.of(ctx, req.model, 25, 2, static=False, latent=True)
    assert (dynamic.prefill_bytes, dynamic.final_bytes) == (1000 * PER_TOKEN, 1024 * PER_TOKEN)
    assert dynamic.final_len == 1024 and dynamic.name == "KV cache"
    static = hf.GenerateCache.of(ctx, req.model, 25, 2, static=True, latent=True)
    assert static.prefill_bytes == static.final_bytes == 1024 * PER_TOKEN


def test_sampling_keeps_the_last_positions_logits_and_their_fp32_copy():
    ctx, req = _ctx("llama-3.1-8b", batch_size=3, seq_len=100, new_tokens=2)
    assert hf.last_logits(ctx, req.model) == {"last-position logits": 3 * 128256 * 2,
                                              "fp32 copy for sampling": 3 * 128256 * 4}


@pytest.mark.parametrize("transformers, moments", [((5, 17, 0), ["last decode step (1024 cached tokens)"]),
                                                   ((4, 40, 0), ["first decode step (transformers < 4.42)",
                                                                 "last decode step (1024 cached tokens)"])])
def test_decode_steps_by_transformers_version(transformers, moments):
    ctx, req = _ctx("llama-3.1-8b", batch_size=1, seq_len=1000, new_tokens=25)
    cache = hf.GenerateCache.of(ctx, req.model, 25, 2, static=False, latent=True)
    snaps = hf.decode_snapshots(ctx, req.model, (("weights", {"w": 1}),), cache, {}, transformers)
    assert [s.moment for s in snaps] == moments
    temps = dict(snaps[-1].parts)["temporaries"]
    if transformers >= (4, 42, 0):
        # torch.cat copies one layer's keys: 1024 x 131,072 / 32 layers / 2 (K of K and V) = 2,097,152
        assert temps["torch.cat copy of one layer's keys"] == 2_097_152
    else:
        assert dict(snaps[0].parts)["temporaries"]["previous step's cache, still referenced"] == 1000 * PER_TOKEN


def test_the_prompt_pass_adds_every_positions_logits_before_4_45():
    ctx, req = _ctx("llama-3.1-8b", batch_size=1, seq_len=10, new_tokens=5)
    cache = hf.GenerateCache.of(ctx, req.model, 5, 2, static=False, latent=True)
    old = hf.prefill_snapshots(ctx, req.model, (), cache, {"x": 1}, (4, 44, 0))
    new = hf.prefill_snapshots(ctx, req.model, (), cache, {"x": 1}, (4, 45, 0))
    assert len(old) == 2 and len(new) == 1
    # 10 positions x 128,256 in bf16 and again in fp32: 2,565,120 + 5,130,240 bytes
    assert sum(dict(old[1].parts)["logits and loss"].values()) == 10 * 128256 * (2 + 4)


def test_a_forward_pass_scores_every_position():
    ctx, req = _ctx("llama-3.1-8b", batch_size=2, seq_len=10)
    snaps = hf.forward_snapshots(ctx, req.model, (), {"x": 1})
    head = dict(snaps[-1].parts)["logits and loss"]
    assert head == {"logits": 2 * 10 * 128256 * 2, "final hidden states": 2 * 10 * 4096 * 2}


def test_estimate_hands_inference_to_serving_hf(monkeypatch):
    req = parse_request({"model": "llama-3.1-8b", "workload": {"mode": "inference"}})
    monkeypatch.setattr(estimate_module, "estimate_inference", lambda *a: ("handed over", a[-1]))
    got = estimate_module.estimate(req.model, req.workload, req.precision, req.hardware, req.framework)
    assert got == ("handed over", [])
