"""The layout search at the scale of Llama-3.1-405B (issue 21): uneven pipeline splits, one row per
layout with the recommended one first, the framework's own arguments, and a device_map that is not
presented as a pipeline. Expected layouts come from published runs: the Llama 3 paper (Dubey et al.
2024, section 3.3.2: TP 8 x PP 16 on 126 layers, the first and last stages one layer short) and
torchtitan's 128-GPU 405B preset (torchtitan/models/llama3/train_configs/llama3_405b.toml @4a950ea:
data_parallel_shard_degree = -1, tensor_parallel_degree = 8, pipeline_parallel_degree = 1,
activation_checkpoint mode = "full", "a preset for 128 H100 GPUs")."""

import json

import pytest

from pycore.api import estimate
from pycore.model.layout import balanced_split, torchtitan_split

B405 = {"model": "llama-3.1-405b", "workload": {"mode": "full", "seq_len": 8192},
        "precision": {"weights": "fp32", "autocast": "bf16"}, "gpu": "h100-sxm-80gb"}


def plan(recipe: str, **q) -> dict:
    resp = json.loads(estimate(json.dumps({**B405, "parallelism": {"recipe": recipe},
                                           "plan": {"global_batch": 2048, "limit": 100000, **q}})))
    assert resp["status"] == "ok", resp
    return resp["result"]["plan"]


def test_megatrons_first_and_last_stage_split_is_the_llama3_papers():
    assert balanced_split(126, 16) == (7,) + (8,) * 14 + (7,)
    assert balanced_split(126, 42) is None                       # 42 divides 126: the even split


def test_torchtitans_split_is_the_one_its_405b_run_used():
    # tests/data/golden_parallel.json tt_llama31_405b_fsdp8_tp8_pp8_1f1b: pipeline_layers from the run
    golden = json.loads(open("tests/data/golden_parallel.json").read())["checks"]
    run = next(c for c in golden if c["id"].startswith("tt_llama31_405b"))
    assert torchtitan_split(126, 8) == tuple(run["request"]["parallelism"]["pipeline_layers"])


def test_megatron_plans_405b_on_at_most_256_gpus():
    p = plan("megatron")
    assert p["gpus"] <= 256
    assert p["recommended"]["fits"] and p["layouts"][0] == p["recommended"]


def test_megatron_on_1024_gpus_fits_tp8_pp16_with_the_llama3_split_and_its_flags():
    p = plan("megatron", gpus=1024)
    row = next(r for r in p["layouts"] if r["degrees"]["tensor"] == 8 and r["degrees"]["pipeline"] == 16
               and r["degrees"]["context"] == 1)
    assert row["fits"] and row["degrees"]["data"] == 8
    assert row["pipeline_layers"] == [7] + [8] * 14 + [7]
    flags = row["launch"]["arguments"]
    assert flags["--tensor-model-parallel-size"] == 8 and flags["--pipeline-model-parallel-size"] == 16
    assert flags["--decoder-first-pipeline-num-layers"] == 7 and flags["--decoder-last-pipeline-num-layers"] == 7
    assert flags["--global-batch-size"] == 2048
    assert "--decoder-first-pipeline-num-layers 7" in row["launch"]["text"]


def test_fsdp2_answers_torchtitans_128_gpu_preset():
    p = plan("fsdp2")
    assert p["gpus"] == 128
    preset = next(r for r in p["layouts"] if r["degrees"] == {"data": 16, "tensor": 8, "pipeline": 1, "context": 1,
                                                              "expert": 1})
    assert preset["fits"] and not preset["tight"] and preset["recompute"] == "full"
    assert preset in p["layouts"][:2]           # the step model puts FSDP 32 x TP 4 (less TP traffic) first
    toml = preset["launch"]["text"]
    assert "tensor_parallel_degree = 8" in toml and "data_parallel_shard_degree = 16" in toml
    assert 'mode = "full"' in toml


def test_one_row_per_distinct_layout_recommended_first():
    p = plan("megatron", gpus=1024)
    keys = [(tuple(r["degrees"].values()), r["zero_stage"]) for r in p["layouts"]]
    assert len(keys) == len(set(keys))
    fitting = [r for r in p["layouts"] if r["fits"]]
    assert p["layouts"][0] == p["recommended"] == fitting[0]
    safe = [r["throughput"]["relative_step_time"] for r in fitting if not r["tight"]]
    assert safe == sorted(safe)


def test_a_device_map_is_not_a_pipeline():
    req = {"model": "llama-3.1-8b", "workload": {"mode": "full", "seq_len": 2048},
           "precision": {"weights": "fp32", "autocast": "bf16"}, "gpu": "h100-sxm-80gb",
           "parallelism": {"recipe": "hf"}, "plan": {"gpus": 2, "global_batch": 16, "limit": 100}}
    rows = json.loads(estimate(json.dumps(req)))["result"]["plan"]["layouts"]
    split = next(r for r in rows if r["degrees"]["pipeline"] == 2)
    assert split["throughput"]["bubble_fraction"] == 0.5          # (p - 1)/p whatever the micro-batches
    assert split["pipeline_schedule"].startswith("device_map") and "not pipeline" in split["pipeline_schedule"]
    assert split["launch"]["arguments"]["from_pretrained"]["device_map"] == "auto"


def test_hf_does_not_offer_tensor_parallelism_without_a_transformers_plan():
    req = {"model": "gpt2", "workload": {"mode": "full", "seq_len": 1024}, "gpu": "h100-sxm-80gb",
           "parallelism": {"recipe": "hf"}, "plan": {"gpus": 8, "limit": 1000}}
    rows = json.loads(estimate(json.dumps(req)))["result"]["plan"]["layouts"]
    assert rows and all(r["degrees"]["tensor"] == 1 for r in rows)


@pytest.mark.parametrize("recipe,fmt", [("megatron", "flags"), ("fsdp2", "toml"), ("deepspeed", "json"),
                                        ("hf", "accelerate")])
def test_every_row_carries_the_frameworks_arguments(recipe, fmt):
    req = {"model": "llama-3.1-8b", "workload": {"mode": "full", "seq_len": 4096},
           "precision": {"weights": "fp32", "autocast": "bf16"}, "gpu": "h100-sxm-80gb",
           "parallelism": {"recipe": recipe}, "plan": {"gpus": 16, "global_batch": 64, "limit": 5}}
    p = json.loads(estimate(json.dumps(req)))["result"]["plan"]
    for r in p["layouts"]:
        assert r["launch"]["format"] == fmt and r["launch"]["text"]
    rec = p["recommended"]
    if recipe == "deepspeed":
        cfg = rec["launch"]["arguments"]["config"]
        assert cfg["zero_optimization"]["stage"] == rec["zero_stage"]
        assert cfg["train_micro_batch_size_per_gpu"] * cfg["gradient_accumulation_steps"] * \
            rec["degrees"]["data"] == 64


def test_an_interleaved_uneven_split_is_given_as_megatrons_layout_string():
    from pycore.parallel.stages import megatron_split_flags
    # the first/last flags count a rank's layers over all its chunks, so interleaving needs the layout
    assert megatron_split_flags((7,) + (8,) * 14 + (7,)) == {"--decoder-first-pipeline-num-layers": 7,
                                                             "--decoder-last-pipeline-num-layers": 7}
    assert megatron_split_flags((1, 2, 2, 1), virtual=2) == {"--pipeline-model-parallel-layout": "Et|tt|tt|tL"}


def test_each_layout_carries_the_terms_its_device_total_is_made_of():
    # The page charts the layouts side by side (issue 25): each row's terms, by key, add up to its device
    # total. Sharding shows in the terms: a ZeRO-2 layout holds less of the optimizer states than the same
    # degrees without sharding (stage 0, DDP), and ZeRO-3 also shards the weights.
    from pycore.api import estimate_dict
    r = estimate_dict({"model": "llama-3.1-8b", "workload": {"mode": "full", "batch_size": 1, "seq_len": 4096},
                       "gpu": "a100-80gb", "plan": {"gpus": 8, "limit": 500}})
    assert r["status"] == "ok", r
    rows = r["result"]["plan"]["layouts"]
    for row in rows:
        assert sum(t["bytes"] for t in row["terms"]) == row["device_total_bytes"]
        assert all(t["key"] for t in row["terms"])
    by = {(tuple(x["degrees"].values()), x["zero_stage"], x["recompute"], x["micro_batch"]): x for x in rows}
    term = lambda row, key: sum(t["bytes"] for t in row["terms"] if t["key"] == key)
    checked = 0
    for (degrees, stage, recompute, micro), row in by.items():
        plain = by.get((degrees, 0, recompute, micro))
        if stage == 0 or plain is None or degrees[0] == 1:
            continue
        assert term(row, "optimizer-states") < term(plain, "optimizer-states")
        if stage == 3:
            assert term(row, "weights") < term(plain, "weights")
        checked += 1
    assert checked
