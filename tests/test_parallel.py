"""Data parallelism and ZeRO: per-GPU model states, checked against the ZeRO paper's accounting."""

import json

from pycore.api import estimate

GiB = 2 ** 30
P = 8_030_261_248          # Llama-3.1-8B


def step(parallelism=None):
    req = {"model": "llama-3.1-8b", "workload": {"batch_size": 1, "seq_len": 256, "gradient_checkpointing": True}}
    if parallelism:
        req["parallelism"] = parallelism
    res = json.loads(estimate(json.dumps(req)))["result"]
    return next(p["bytes"] for p in res["phases"] if p["phase"] == "optimizer step")


def test_no_parallelism_is_weights_grads_states_and_foreach_buffer():
    assert step() == 2 * P + 2 * P + 4 * P + 2 * P


def test_ddp_adds_gradient_buckets():
    assert step({"data_parallel": 8, "zero_stage": 0}) == step() + 2 * P


def test_zero_stages_shard_states_then_gradients_then_weights():
    n = 8
    z1 = step({"data_parallel": n, "zero_stage": 1})
    z2 = step({"data_parallel": n, "zero_stage": 2})
    z3 = step({"data_parallel": n, "zero_stage": 3})
    assert abs(z1 - (2 * P + 2 * P + (4 * P + 2 * P) / n)) < 64
    assert abs(z2 - (2 * P + (2 * P + 4 * P + 2 * P) / n)) < 64
    assert z3 < z2 - 2 * P * (1 - 1 / n) + 2 * 2 * P / 32 + 64     # weights sharded, two layers gathered


def test_parallelism_is_refused_for_inference_and_bad_stages():
    for par, field in (({"zero_stage": 4}, "parallelism.zero_stage"), ({"data_parallel": 0}, "parallelism.data_parallel")):
        resp = json.loads(estimate(json.dumps({"model": "gpt2", "parallelism": par})))
        assert resp["errors"][0]["field"] == field
    resp = json.loads(estimate(json.dumps({"model": "gpt2", "workload": {"mode": "inference"},
                                           "parallelism": {"data_parallel": 2}})))
    assert resp["errors"][0]["field"] == "parallelism"
