"""The estimate's structure and its arithmetic, checked by hand and against measurements."""

import json

import pytest

from pycore.api import estimate as estimate_json
from pycore.data.catalog import catalog_model
from pycore.estimate import estimate
from pycore.training.workload import Hardware, Precision, Workload

H100 = Hardware("H100", 85_017_493_504)


def run(model="llama-3.2-1b", gpu="h100-sxm-80gb", **workload):
    precision = workload.pop("precision", {"weights": "bf16"})
    resp = json.loads(estimate_json(json.dumps({"model": model, "workload": workload, "precision": precision,
                                                "gpu": gpu})))
    assert resp["status"] == "ok", resp
    return resp["result"]


def _check_sums(node):
    if "children" in node:
        assert node["bytes"] == sum(c["bytes"] for c in node["children"]), node["name"]
        for c in node["children"]:
            _check_sums(c)


CONFIGS = [
    dict(mode="full", batch_size=2, seq_len=512),
    dict(mode="full", batch_size=2, seq_len=512, gradient_checkpointing=True, optimizer="sgd_momentum"),
    dict(mode="full", batch_size=1, seq_len=256, attention="eager", precision={"weights": "fp32", "autocast": "bf16"}),
    dict(mode="lora", batch_size=4, seq_len=1024, lora={"rank": 8, "targets": "all-linear"}),
    dict(mode="qlora", batch_size=4, seq_len=1024),
    dict(mode="inference", batch_size=8, seq_len=1024, new_tokens=64),
    dict(mode="inference", batch_size=8, seq_len=1024, precision={"weights": "int4"}),
]


@pytest.mark.parametrize("model", ["gpt2", "bert-base", "llama-3.2-1b", "qwen3-30b-a3b", "deepseek-v2-lite",
                                   "gemma-2-2b", "phi-3-mini", "chatglm3-6b", "pythia-1b"])
@pytest.mark.parametrize("cfg", range(len(CONFIGS)))
def test_every_breakdown_adds_up(model, cfg):
    res = run(model, **json.loads(json.dumps(CONFIGS[cfg])))
    _check_sums(res["breakdown"])
    allocated = res["breakdown"]["children"][0]
    assert allocated["bytes"] == res["peak_allocated_bytes"]
    assert res["breakdown"]["bytes"] == res["device_total_bytes"]


@pytest.mark.parametrize("cfg", range(len(CONFIGS)))
def test_peak_is_the_largest_phase_not_the_sum(cfg):
    res = run("llama-3.2-1b", **json.loads(json.dumps(CONFIGS[cfg])))
    phases = [p["bytes"] for p in res["phases"]]
    assert res["peak_allocated_bytes"] == max(phases)
    assert res["peak_allocated_bytes"] < sum(phases)


@pytest.mark.parametrize("field", ["batch_size", "seq_len"])
@pytest.mark.parametrize("cfg", range(len(CONFIGS)))
def test_more_batch_or_sequence_never_means_less_memory(field, cfg):
    previous = 0
    for value in (1, 2, 3, 8, 17, 64, 300):
        c = json.loads(json.dumps(CONFIGS[cfg]))
        c[field] = value
        res = run("qwen2.5-0.5b", **c)
        assert res["peak_allocated_bytes"] >= previous
        assert res["device_total_bytes"] >= previous
        previous = res["peak_allocated_bytes"]


def test_inference_kv_cache_by_hand():
    # Llama-3.1-8B, bf16: K and V of 8 heads x 128 dims over 32 layers = 131072 bytes per token.
    res = run("llama-3.1-8b", mode="inference", batch_size=4, seq_len=1000, new_tokens=25)
    decode = next(p for p in res["phases"] if p["phase"] == "decode")
    cache = next(c for c in res["breakdown"]["children"][0]["children"] if c["name"] == "KV cache") \
        if res["peak_phase"] == "decode" else None
    per_token = 2 * 8 * 128 * 2 * 32
    assert per_token == 131072
    expected_cache = 4 * (1000 + 25 - 1) * per_token
    if cache:
        assert cache["bytes"] == expected_cache
    weights = 8_030_261_248 * 2
    assert decode["bytes"] > weights + expected_cache


def test_full_training_static_memory_by_hand():
    # bf16 AdamW: weights 2P, states 4P (two bf16 moments), grads 2P, foreach temporary 2P at the step.
    p = 1_235_814_400
    m = catalog_model("llama-3.2-1b")
    e = estimate(m, Workload(mode="full", batch_size=1, seq_len=16), Precision("bf16"), H100)
    step = next(s for s in e.snapshots if s.phase == "optimizer step")
    assert step.total() == 2 * p + 4 * p + 2 * p + 2 * p


def test_fused_adamw_has_no_step_temporary():
    m = catalog_model("llama-3.2-1b")
    w = Workload(mode="full", batch_size=1, seq_len=16, optimizer="adamw_fused")
    step = next(s for s in estimate(m, w, Precision("bf16"), H100).snapshots if s.phase == "optimizer step")
    assert step.total() == 1_235_814_400 * (2 + 4 + 2)


def test_logits_and_loss_follow_the_transformers_loss_path():
    # b*s*V: logits in bf16 (2 bytes) and the fp32 log-softmax (4 bytes); backward adds two fp32 grads.
    m = catalog_model("llama-3.2-1b")
    e = estimate(m, Workload(mode="full", batch_size=2, seq_len=1024), Precision("bf16"), H100)
    loss_bwd = next(s for s in e.snapshots if s.moment.startswith("loss backward"))
    parts = dict(loss_bwd.parts)
    n = 2 * 1024 * 128256
    assert parts["logits and loss"] == {"logits": 2 * n, "loss log-softmax": 4 * n}
    assert parts["temporaries"] == {"loss gradients": 8 * n}


def test_does_not_fit_is_a_result_with_negative_headroom():
    res = run("llama-3.1-70b", gpu="rtx-4090-24gb", mode="full", batch_size=1, seq_len=2048)
    assert res["fits"] is False and res["headroom_bytes"] < 0


def test_sequence_beyond_max_positions_warns():
    res = run("gpt2", mode="inference", batch_size=1, seq_len=2000, precision={"weights": "fp32"})
    assert any("max_position_embeddings" in w for w in res["warnings"])


def test_qlora_weights_by_hand():
    # NF4 with double quantisation: 0.5 byte per weight + 1 byte per 64 weights + 4 bytes per 256 blocks.
    m = catalog_model("llama-2-7b")
    e = estimate(m, Workload(mode="qlora", batch_size=1, seq_len=16), Precision("bf16"), H100)
    w = dict(e.peak.parts)["weights"]
    linear = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
    assert w["4-bit NF4 weights"] == linear // 2
    blocks = linear // 64
    assert w["NF4 quantisation constants"] == blocks + 4 * -(-blocks // 256)


def test_lora_adapters_are_fp32_and_qlora_adapters_16_bit():
    # peft upcasts 16-bit LoRA adapters to fp32 (measured: n_trainable x 4 bytes); QLoRA keeps bf16.
    m = catalog_model("llama-2-7b")
    adapters = 32 * 16 * (4 * (4096 + 4096))          # rank 16 on q, k, v, o of 32 layers
    for mode, size in (("lora", 4), ("qlora", 2)):
        e = estimate(m, Workload(mode=mode, batch_size=1, seq_len=16), Precision("bf16"), H100)
        assert dict(e.peak.parts)["weights"]["LoRA adapters"] == adapters * size


def test_adafactor_runs_one_matrix_at_a_time_by_default():
    # torch/optim/_adafactor.py:246-252, 636 (torch >= 2.5): foreach unset means the single-tensor loop, whose
    # var_estimate = row_var @ col_var is one matrix at a time: the largest, Llama-3.2-1B's tied embedding
    # 128,256 x 2,048 in bf16. (The issue-13 family: the foreach figure, 2 x P, was 18% high at the step.)
    m = catalog_model("llama-3.2-1b")
    w = Workload(mode="full", batch_size=1, seq_len=16, optimizer="adafactor")
    step = next(s for s in estimate(m, w, Precision("bf16"), H100).snapshots if s.phase == "optimizer step")
    assert dict(step.parts)["temporaries"] == {"optimizer temporaries": 2 * 128256 * 2048}
    # transformers' Adafactor: fp32 statistics and 16 bytes per element of the largest bf16 parameter
    w_hf = Workload(mode="full", batch_size=1, seq_len=16, optimizer="adafactor_hf")
    step_hf = next(s for s in estimate(m, w_hf, Precision("bf16"), H100).snapshots if s.phase == "optimizer step")
    assert dict(step_hf.parts)["temporaries"] == {"optimizer temporaries": 16 * 128256 * 2048}
    assert dict(step_hf.parts)["optimizer states"]["optimizer states"] == \
        2 * dict(step.parts)["optimizer states"]["optimizer states"]          # fp32 vs bf16 statistics
    assert dict(step.parts)["optimizer states"]["optimizer states"] < 0.01 * 2 * 1_235_814_400


def test_the_activation_explanation_plugs_in_this_runs_numbers_and_they_add_up():
    import re
    from pycore.api import estimate_dict
    res = estimate_dict({"model": "gemma-2-2b", "workload": {"mode": "lora", "seq_len": 8192}, "gpu": "a100-80gb",
                         "solve": True})["result"]
    text = res["explanations"]["activations"]["numbers"]
    parts = re.findall(r"(\d+) layers x ([\d,]+) bytes \(([\d,]+) bytes per token x ([\d,]+) tokens\)", text)
    num = lambda s: int(s.replace(",", ""))
    # Gemma 2's 26 layers: 13 sliding-window layers keep less than the 13 global ones past the 4096 window
    assert sorted(int(n) for n, *_ in parts) == [13, 13] and len({num(b) for _, b, _, _ in parts}) == 2
    for n, kept, per_token, tokens in parts:
        assert num(tokens) == 8192 and num(kept) // num(tokens) == num(per_token)
    total = sum(int(n) * num(kept) for n, kept, _, _ in parts)
    assert f"= {total / 2 ** 30:.2f} GiB kept by the layers" in text
    acts = next(c for c in res["breakdown"]["children"][0]["children"] if c["name"] == "activations")
    assert f"{acts['bytes'] / 2 ** 30:.2f} GiB in all" in text and acts["bytes"] >= total
