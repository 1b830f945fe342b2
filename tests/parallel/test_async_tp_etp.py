"""Expert tensor parallelism (parallelism.expert_tensor_parallel: Megatron's --expert-tensor-parallel-size,
honoured by recipe megatron, refused by name elsewhere) and torchtitan's async TP (fsdp2 option
async_tensor_parallel: a workspace in memory, TP traffic under the matmuls in the step-time model).
Expected values are worked by hand from the sources cited in the modules."""

import json

import pytest

from pycore.api import estimate as api
from pycore.errors import InputError
from pycore.estimate import estimate as typed
from pycore.request.parse import parse_request

MIXTRAL = {"model": "mixtral-8x7b", "workload": {"seq_len": 4096}, "precision": {"weights": "fp32", "autocast": "bf16"},
           "gpu": {"memory_gib": 1000}}
# Mixtral 8x7B: h 4096, 8 experts of width 14336 (gated: 3 matrices), 32 MoE layers. Routed-expert
# parameters, theoretical_memory_usage.py's routed_expert_params x layers: 2 x 4096 x 14336 x 8 x 1.5 x 32
ROUTED = 2 * 4096 * 14336 * 8 * 3 // 2 * 32


def run(body: dict):
    req = parse_request(body)
    return typed(req.model, req.workload, req.precision, req.hardware, req.framework, req.parallelism)


def megatron(**par):
    req = parse_request({**MIXTRAL, "parallelism": {"recipe": "megatron", **par}})
    return typed(req.model, req.workload, req.precision, req.hardware, req.framework, req.parallelism)


def test_megatron_divides_the_experts_by_etp_x_ep():
    assert ROUTED == 45_097_156_608
    e1 = megatron(tensor_parallel=2, expert_parallel=4, expert_tensor_parallel=1).report
    e2 = megatron(tensor_parallel=2, expert_parallel=4, expert_tensor_parallel=2).report
    assert e1["expert_parameters"] == ROUTED / 4            # ETP 1: whole experts, 2 of 8 a rank
    assert e2["expert_parameters"] == ROUTED / 8            # each of those split over 2 ranks


def test_megatrons_default_etp_is_the_tensor_degree():
    # arguments.py: expert_tensor_parallel_size defaults to tensor_model_parallel_size
    assert megatron(tensor_parallel=2, expert_parallel=4).report["expert_parameters"] == \
        megatron(tensor_parallel=2, expert_parallel=4, expert_tensor_parallel=2).report["expert_parameters"]


def test_etp_sets_the_expert_data_parallel_size_of_the_distributed_optimizer():
    # 16 GPUs = dp 2 x tp 2 x ep 4; expert_data_parallel_size = world / (ETP x EP x PP):
    # ETP 1: 16 / 4 = 4, bytes a parameter 6 + 12/4 = 9; ETP 2: 16 / 8 = 2, 6 + 12/2 = 12
    for etp, bpp in ((1, 9), (2, 12)):
        r = megatron(data_parallel=2, tensor_parallel=2, expert_parallel=4, expert_tensor_parallel=etp,
                     zero_stage=1).report
        dense = r["most_loaded_shard_parameters"] * r["bytes_per_parameter"]
        assert r["weight_and_optimizer_bytes"] - dense == pytest.approx(r["expert_parameters"] * bpp)


def test_the_megatron_launch_flags_carry_etp():
    req = {**MIXTRAL, "gpu": "h100-sxm-80gb", "parallelism": {"recipe": "megatron", "expert_tensor_parallel": 1,
                                                             "recompute": "full"},
           "plan": {"gpus": 32, "limit": 3}}
    res = json.loads(api(json.dumps(req)))
    assert res["status"] == "ok", res
    for row in res["result"]["plan"]["layouts"]:
        assert row["launch"]["arguments"]["--expert-tensor-parallel-size"] == 1


@pytest.mark.parametrize("recipe", ["fsdp2", "deepspeed", "hf", "zero-paper", "playbook", "deepspeed-estimator"])
def test_other_recipes_refuse_etp_by_name(recipe):
    with pytest.raises(InputError) as err:
        run({**MIXTRAL, "parallelism": {"recipe": recipe, "expert_parallel": 2, "expert_tensor_parallel": 2}})
    assert err.value.field == "parallelism.expert_tensor_parallel"


def test_etp_must_fit_megatrons_expert_layout():
    with pytest.raises(InputError) as err:          # dp x tp x cp = 2, ETP 4 cannot divide it
        run({**MIXTRAL, "parallelism": {"recipe": "megatron", "tensor_parallel": 2, "expert_parallel": 2,
                                        "expert_tensor_parallel": 4}})
    assert err.value.field == "parallelism.expert_tensor_parallel"
    with pytest.raises(InputError):                  # a dense model has no experts to split
        run({"model": "llama-3.2-1b", "parallelism": {"recipe": "megatron", "tensor_parallel": 2,
                                                       "expert_tensor_parallel": 2}})


# ---- async TP (recipe fsdp2) --------------------------------------------------------------------

def fsdp2(options, tp=2):
    req = parse_request({"model": "llama-3.2-1b", "workload": {"batch_size": 2, "seq_len": 2048},
                         "precision": {"weights": "fp32", "autocast": "bf16"}, "gpu": {"memory_gib": 1000},
                         "parallelism": {"recipe": "fsdp2", "data_parallel": 2, "tensor_parallel": tp,
                                         "options": options}})
    return req, typed(req.model, req.workload, req.precision, req.hardware, req.framework, req.parallelism)


def test_async_tp_needs_compile_as_torchtitan_says():
    with pytest.raises(InputError) as err:
        fsdp2({"async_tensor_parallel": True})
    assert err.value.field == "parallelism.options.async_tensor_parallel"


def test_async_tp_holds_a_symmetric_memory_workspace():
    # 2 x b s h / t in bf16: 2 x (2 x 2048) x 2048 / 2 x 2 bytes = 16 MiB
    _, est = fsdp2({"compile": True, "async_tensor_parallel": True})
    step = next(s for s in est.snapshots if s.moment == "last layer's forward")
    buffers = dict(step.parts)["framework buffers"]
    assert buffers["async TP symmetric-memory workspace"] == 16 * 2 ** 20


def test_async_tp_hides_tp_traffic_within_a_node_only():
    from pycore.plan.steptime import step_time
    req, _ = fsdp2({"compile": True})
    on, _ = fsdp2({"compile": True, "async_tensor_parallel": True})
    plain = step_time(req, req.parallelism, 2, 1)
    hidden = step_time(on, on.parallelism, 2, 1)
    assert plain["communication_fraction"]["tensor"] > 0 and hidden["communication_fraction"]["tensor"] == 0
    assert hidden["tp_overlapped"] and hidden["relative_step_time"] < plain["relative_step_time"]
    # TP 16 spans two nodes of 8: symmetric memory cannot reach across, nothing is hidden
    wide = parse_request({"model": "llama-3.1-8b", "workload": {"seq_len": 2048}, "gpu": {"memory_gib": 1000},
                          "precision": {"weights": "fp32", "autocast": "bf16"},
                          "parallelism": {"recipe": "fsdp2", "tensor_parallel": 8, "context_parallel": 2,
                                          "options": {"compile": True, "async_tensor_parallel": True}}})
    assert not step_time(wide, wide.parallelism, 1, 1)["tp_overlapped"]


def test_fsdp2_405b_with_torchtitans_async_tp_recommends_its_preset():
    # torchtitan's llama3_405b.toml: data_parallel_shard_degree -1 (16 on 128 GPUs), TP 8, compile,
    # enable_async_tensor_parallel, activation_checkpoint full
    req = {"model": "llama-3.1-405b", "workload": {"seq_len": 8192}, "gpu": "h100-sxm-80gb",
           "precision": {"weights": "fp32", "autocast": "bf16"},
           "parallelism": {"recipe": "fsdp2", "options": {"compile": True, "async_tensor_parallel": True}},
           "plan": {"global_batch": 2048, "limit": 3}}
    plan = json.loads(api(json.dumps(req)))["result"]["plan"]
    rec = plan["recommended"]
    assert plan["gpus"] == 128
    assert rec["degrees"] == {"data": 16, "tensor": 8, "pipeline": 1, "context": 1, "expert": 1}
    assert rec["recompute"] == "full"
    assert "enable_async_tensor_parallel = true" in rec["launch"]["text"]
