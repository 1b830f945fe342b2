"""Sweeps (issue 12): one request returns every point, each the estimate of the request with that value,
its terms adding up to the device total; the out-of-memory point is the first that does not fit."""

import pytest

from pycore.api import estimate_dict

BASE = {"model": "llama-3.1-8b", "workload": {"mode": "lora", "seq_len": 1024}, "gpu": "a100-80gb"}


def _run(req):
    resp = estimate_dict(req)
    assert resp["status"] == "ok", resp
    return resp["result"]


@pytest.mark.parametrize("field, path", [("batch_size", "batch_size"), ("seq_len", "seq_len")])
def test_each_point_is_the_estimate_with_that_value(field, path):
    sw = _run({**BASE, "sweep": {"field": field, "start": 1 if field == "batch_size" else 256, "points": 8}})["sweep"]
    values = [p["value"] for p in sw["points"]]
    start = 1 if field == "batch_size" else 256
    assert values == [start * 2 ** i for i in range(len(values))] and 2 <= len(values) <= 8     # doubling, by hand
    for p in sw["points"]:
        one = _run({**BASE, "workload": {**BASE["workload"], path: p["value"]}})
        assert p["device_total_bytes"] == one["device_total_bytes"]
        assert sum(t["bytes"] for t in p["terms"]) == p["device_total_bytes"]
        assert p["fits"] == one["fits"]
    totals = [p["device_total_bytes"] for p in sw["points"]]
    assert totals == sorted(totals)                   # memory grows with batch and with length
    first_oom = next((p["value"] for p in sw["points"] if not p["fits"]), None)
    assert sw["oom_at"] == first_oom
    assert sw["capacity_bytes"] == _run(BASE)["gpu"]["memory_bytes"]


def test_against_gpus_the_first_count_that_fits():
    req = {"model": "llama-3.1-8b", "workload": {"mode": "full", "seq_len": 2048},
           "precision": {"weights": "fp32", "autocast": "bf16"}, "parallelism": {"recipe": "fsdp2"},
           "gpu": "a100-80gb", "sweep": {"field": "gpus", "stop": 64}}
    sw = _run(req)["sweep"]
    assert [p["value"] for p in sw["points"]] == [1, 2, 4, 8, 16, 32, 64]
    totals = [p["device_total_bytes"] for p in sw["points"]]
    assert totals == sorted(totals, reverse=True)     # sharding over more GPUs: less on each
    assert sw["fits_from"] == next(p["value"] for p in sw["points"] if p["fits"])
    eight = _run({**{k: v for k, v in req.items() if k != "sweep"}, "parallelism": {"recipe": "fsdp2", "data_parallel": 8}})
    assert sw["points"][3]["device_total_bytes"] == eight["device_total_bytes"]


def test_bad_sweeps_name_the_field():
    for sweep, field in (({"field": "layers"}, "sweep.field"), ({"points": 1000}, "sweep.points"),
                         ({"start": 8, "stop": 2}, "sweep.stop"), ({"start": 0}, "sweep.start")):
        resp = estimate_dict({**BASE, "sweep": sweep})
        assert resp["status"] == "error" and resp["errors"][0]["field"] == field, resp
    resp = estimate_dict({"model": "llama-3.1-8b", "workload": {"mode": "serve", "engine": "vllm"}, "sweep": {}})
    assert resp["errors"][0]["field"] == "sweep"
