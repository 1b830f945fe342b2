"""Every recipe honours every degree it accepts, or refuses it naming the field (issue 21).

Each case changes one degree from a base layout and states what must change, with the ratio done
by hand where the recipe's formula gives one (Llama-3.2-1B: P = 1,235,814,400 parameters, 16
layers, hidden 2048, 32 heads, 8 KV heads, MLP 8192, vocabulary 128,256, tied embeddings)."""

import json

import pytest

from pycore.api import estimate

P = 1_235_814_400
BASE = {"model": "llama-3.2-1b", "workload": {"batch_size": 1, "seq_len": 2048},
        "precision": {"weights": "fp32", "autocast": "bf16"}, "gpu": {"memory_gib": 1000}}
MOE = {**BASE, "model": "mixtral-8x7b", "workload": {"batch_size": 1, "seq_len": 1024}}


def run(par: dict, base=BASE) -> dict:
    resp = json.loads(estimate(json.dumps({**base, "parallelism": par})))
    assert resp["status"] == "ok", resp
    return resp["result"]


def refused(par: dict, base=BASE) -> str:
    resp = json.loads(estimate(json.dumps({**base, "parallelism": par})))
    assert resp["status"] == "error", (par, resp.get("result", {}).get("device_total_bytes"))
    return resp["errors"][0]["field"]


def states(res) -> int:
    return res["model_states_bytes"]


def category(res, name) -> int:
    peak = res["breakdown"]["children"][0]
    return sum(c["bytes"] for c in peak["children"] if c["name"] == name)


def activations(res) -> int:
    """Formula recipes: their activation term; simulated ones: the highest moment of the forward,
    when every saved activation is held (the model states are the same in the runs compared)."""
    if res["layout"].get("stages") == [] or "formula_version" in (res.get("report") or {}):
        return category(res, "activations")
    return max(p["bytes"] for p in res["phases"] if p["phase"] == "forward")


def ratio(a, b) -> float:
    return a / b


# ---- degrees each recipe refuses, by name ---------------------------------------------------------

@pytest.mark.parametrize("recipe,par,field", [
    ("playbook", {"pipeline_parallel": 2, "virtual_stages": 2}, "parallelism.virtual_stages"),
    ("zero-paper", {"pipeline_parallel": 2, "virtual_stages": 2}, "parallelism.virtual_stages"),
    ("deepspeed", {"pipeline_parallel": 2, "virtual_stages": 2}, "parallelism.virtual_stages"),
    ("hf", {"pipeline_parallel": 2, "virtual_stages": 2}, "parallelism.virtual_stages"),
    ("hf", {"context_parallel": 2}, "parallelism.context_parallel"),
    ("hf", {"tensor_parallel": 2, "sequence_parallel": True}, "parallelism.sequence_parallel"),
    ("deepspeed-estimator", {"zero_stage": 2, "tensor_parallel": 2}, "parallelism.tensor_parallel"),
    ("deepspeed-estimator", {"zero_stage": 2, "pipeline_parallel": 2}, "parallelism.pipeline_parallel"),
    ("deepspeed-estimator", {"zero_stage": 2, "context_parallel": 2}, "parallelism.context_parallel"),
    ("deepspeed-estimator", {"zero_stage": 2, "sequence_parallel": True}, "parallelism.sequence_parallel"),
    ("megatron", {"zero_stage": 2}, "parallelism.zero_stage"),
    ("megatron", {"offload_optimizer": "cpu"}, "parallelism.offload_optimizer"),
    ("playbook", {"offload_optimizer": "cpu"}, "parallelism.offload_optimizer"),
    ("fsdp2", {"zero_stage": 1}, "parallelism.zero_stage"),
])
def test_a_degree_the_recipe_does_not_model_is_refused_by_name(recipe, par, field):
    assert refused({"recipe": recipe, **par}) == field


@pytest.mark.parametrize("recipe", ["playbook", "zero-paper", "hf", "deepspeed-estimator"])
def test_expert_parallelism_is_refused_where_a_recipe_has_no_experts(recipe):
    zero = {"zero_stage": 2} if recipe == "deepspeed-estimator" else {}
    assert refused({"recipe": recipe, "expert_parallel": 2, **zero}, MOE) == "parallelism.expert_parallel"


def test_hf_refuses_tensor_parallelism_for_a_model_without_a_transformers_tp_plan():
    # transformers' GPT2Config declares no base_model_tp_plan; LlamaConfig does
    assert refused({"recipe": "hf", "tensor_parallel": 2}, {**BASE, "model": "gpt2"}) == "parallelism.tensor_parallel"
    assert run({"recipe": "hf", "tensor_parallel": 2})["layout"]["gpus"] == 2


# ---- playbook: 2 + 2 + 8 bytes a parameter, divided by hand --------------------------------------

def test_playbook_zero_divides_states_by_the_data_parallel_ranks():
    one = states(run({"recipe": "playbook"}))
    assert one == pytest.approx(12 * P, abs=4)
    assert states(run({"recipe": "playbook", "data_parallel": 8})) == one        # no ZeRO: replicated
    assert states(run({"recipe": "playbook", "data_parallel": 8, "zero_stage": 1})) == pytest.approx(5 * P, abs=4)
    assert states(run({"recipe": "playbook", "data_parallel": 8, "zero_stage": 2})) == pytest.approx(3.25 * P, abs=4)
    assert states(run({"recipe": "playbook", "data_parallel": 8, "zero_stage": 3})) == pytest.approx(1.5 * P, abs=4)


def test_playbook_divides_states_by_pp_and_tp_and_activations_as_its_formula():
    one = run({"recipe": "playbook"})
    pp = run({"recipe": "playbook", "pipeline_parallel": 4})
    tp = run({"recipe": "playbook", "tensor_parallel": 2})
    sp = run({"recipe": "playbook", "tensor_parallel": 2, "sequence_parallel": True})
    cp = run({"recipe": "playbook", "context_parallel": 2})
    full = run({"recipe": "playbook", "recompute": "full"})
    assert ratio(states(pp), states(one)) == pytest.approx(1 / 4, rel=1e-6)
    assert activations(pp) == activations(one)          # 1F1B: p micro-batches of L/p layers on stage 0
    assert ratio(states(tp), states(one)) == pytest.approx(1 / 2, rel=1e-6)
    assert ratio(activations(tp), activations(one)) == pytest.approx((10 + 24 / 2) / (10 + 24), rel=1e-6)
    assert ratio(activations(sp), activations(tp)) == pytest.approx((34 / 2) / (10 + 24 / 2), rel=1e-6)
    assert ratio(activations(cp), activations(one)) == pytest.approx(1 / 2, rel=1e-6)
    # 16 layers keep a 2 s b h input each, and one layer is recomputed: (2 x 16 + 34) / (34 x 16)
    assert ratio(activations(full), activations(one)) == pytest.approx((2 * 16 + 34) / (34 * 16), rel=1e-6)
    blocks4 = run({"recipe": "playbook", "recompute": "full", "recompute_layers": 4})
    assert ratio(activations(blocks4), activations(one)) == pytest.approx((2 * 4 + 34 * 4) / (34 * 16), rel=1e-6)


# ---- zero-paper: 2 + 2 + 12 bytes ------------------------------------------------------------------

def test_zero_paper_degrees_by_hand():
    def s(par):
        return states(run({"recipe": "zero-paper", **par}))
    assert s({}) == pytest.approx(16 * P, abs=4)
    assert s({"data_parallel": 8, "zero_stage": 2}) == pytest.approx(2 * P + 14 * P / 8, abs=8)
    assert s({"tensor_parallel": 2}) == pytest.approx(8 * P, abs=8)
    assert s({"pipeline_parallel": 4}) == pytest.approx(4 * P, abs=8)
    ckpt = lambda par: run({"recipe": "zero-paper", "recompute": "full", **par})["report"][  # noqa: E731
        "activation_checkpoint_bytes"]
    assert ckpt({}) == 1 * 2048 * 2048 * 16 * 2                  # b s h L x 2 bytes
    assert ckpt({"context_parallel": 2}) == ckpt({}) // 2
    assert ckpt({"tensor_parallel": 2, "sequence_parallel": True}) == ckpt({}) // 2
    assert ckpt({"recompute_layers": 4}) == ckpt({}) // 4              # a checkpoint per block of 4 layers
    assert "activations" in run({"recipe": "zero-paper", "recompute": "none"})["not_estimated"]


def test_deepspeed_estimator_data_parallel_and_offload_by_hand():
    def gpu(par):
        return states(run({"recipe": "deepspeed-estimator", "zero_stage": 2, **par}))
    assert gpu({"data_parallel": 8}) == 2 * P + int(18 * P / 8)
    assert gpu({"data_parallel": 16}) == 2 * P + int(18 * P / 16)
    assert gpu({"data_parallel": 8, "offload_optimizer": "cpu"}) == 2 * P
    assert "activations" in run({"recipe": "deepspeed-estimator", "zero_stage": 2})["not_estimated"]


# ---- megatron (theoretical_memory_usage.py terms) ----------------------------------------------------

def test_megatron_distributed_optimizer_divides_twelve_of_eighteen_bytes():
    one = states(run({"recipe": "megatron", "data_parallel": 8}))
    dist = states(run({"recipe": "megatron", "data_parallel": 8, "zero_stage": 1}))
    assert ratio(dist, one) == pytest.approx((6 + 12 / 8) / 18, rel=1e-6)


def test_megatron_model_parallel_degrees():
    one = run({"recipe": "megatron"})
    tp = run({"recipe": "megatron", "tensor_parallel": 2})
    pp = run({"recipe": "megatron", "pipeline_parallel": 2, "micro_batches": 8})
    vpp = run({"recipe": "megatron", "pipeline_parallel": 2, "virtual_stages": 2, "micro_batches": 8})
    cp = run({"recipe": "megatron", "context_parallel": 2})
    assert 0.5 < ratio(states(tp), states(one)) < 0.51          # norms stay whole on every rank
    # stage 0: 8 of the 16 layers' 973,144,064 parameters and the 128,256 x 2048 embedding
    assert ratio(states(pp), states(one)) == pytest.approx((973_144_064 / 2 + 262_668_288) / P, rel=2e-3)
    # stage 0 of an interleaved pipeline: (2 (p - 1) + (v - 1) p + 1) / v = 2.5 micro-batches, not 2
    assert ratio(activations(vpp), activations(pp)) == pytest.approx(2.5 / 2, rel=1e-6)
    assert ratio(activations(cp), activations(one)) == pytest.approx(1 / 2, rel=1e-4)
    sp = run({"recipe": "megatron", "tensor_parallel": 2, "sequence_parallel": True, "recompute": "selective"})
    assert activations(sp) < activations(run({"recipe": "megatron", "tensor_parallel": 2, "recompute": "selective"}))


def test_megatron_recompute_changes_activations_for_mixtral_with_expert_parallel_at_tp1():
    par = {"recipe": "megatron", "expert_parallel": 8, "pipeline_parallel": 4}
    none = activations(run({**par, "recompute": "none"}, MOE))
    full = activations(run({**par, "recompute": "full"}, MOE))
    # per layer 2 s b h kept instead of s b h (10 + 24): 1/17 of it, plus one recomputed layer
    assert full < none / 5
    ep1 = run({"recipe": "megatron", "data_parallel": 8, "pipeline_parallel": 4}, MOE)
    assert states(run(par, MOE)) < states(ep1) / 4                # experts / 8 on each rank


def test_megatron_full_recompute_per_layer_counts_by_hand():
    def act(k):
        return activations(run({"recipe": "megatron", "recompute": "full", "recompute_layers": k}))
    # 16 layers, p = 1: blocks of k keep ceil(16/k) inputs of 2 s b h and recompute k layers of s b h (10 + 24)
    sbh = 2048 * 2048
    layer_part = lambda k: (2 * sbh * -(-16 // k) + 34 * sbh * k)       # noqa: E731
    assert act(4) - act(1) == pytest.approx((layer_part(4) - layer_part(1)) * 1.05, rel=1e-6)


# ---- simulated recipes: fsdp2, deepspeed, hf -----------------------------------------------------

@pytest.mark.parametrize("recipe,zero,high", [("fsdp2", 3, 1.02), ("deepspeed", 3, 1.02), ("hf", 3, 1.1)])
def test_data_parallel_sharding_divides_the_states(recipe, zero, high):
    two = states(run({"recipe": recipe, "data_parallel": 2, "zero_stage": zero}))
    eight = states(run({"recipe": recipe, "data_parallel": 8, "zero_stage": zero}))
    # a quarter, plus (hf) the two gathered layers that every rank holds whole
    assert 1 / 4 <= ratio(eight, two) < high / 4


@pytest.mark.parametrize("recipe", ["deepspeed", "hf"])
def test_zero_stages_shard_more_at_each_stage(recipe):
    got = [states(run({"recipe": recipe, "data_parallel": 8, "zero_stage": z})) for z in (0, 1, 2, 3)]
    assert got[0] > got[1] > got[2] > got[3]


def test_fsdp2_zero_stage_zero_is_its_own_full_sharding():
    assert states(run({"recipe": "fsdp2", "data_parallel": 4})) == states(
        run({"recipe": "fsdp2", "data_parallel": 4, "zero_stage": 3}))


@pytest.mark.parametrize("recipe,high", [("fsdp2", 0.62), ("deepspeed", 0.62), ("hf", 0.75)])
def test_tensor_and_pipeline_parallel_split_the_states(recipe, high):
    one = states(run({"recipe": recipe}))
    tp = states(run({"recipe": recipe, "tensor_parallel": 2}))
    pp = states(run({"recipe": recipe, "pipeline_parallel": 2, "micro_batches": 2}))
    assert 0.49 < ratio(tp, one) < 0.52
    # half the layers plus the 128,256 x 2048 embedding or its copy as the output layer: 0.606 of
    # the model; accelerate's device_map (hf) fills GPU 0 to its share plus 1.25 layers first
    assert 0.45 < ratio(pp, one) < high


@pytest.mark.parametrize("recipe", ["fsdp2", "deepspeed"])
def test_context_and_sequence_parallel_lower_the_activations(recipe):
    one = activations(run({"recipe": recipe, "data_parallel": 2}))
    cp = activations(run({"recipe": recipe, "context_parallel": 2}))
    assert cp < one
    tp = activations(run({"recipe": recipe, "tensor_parallel": 2}))
    sp = activations(run({"recipe": recipe, "tensor_parallel": 2, "sequence_parallel": True}))
    assert sp < tp


def test_fsdp2_interleaving_keeps_more_micro_batches_on_the_first_stage():
    pp = run({"recipe": "fsdp2", "pipeline_parallel": 2, "micro_batches": 8})
    vpp = run({"recipe": "fsdp2", "pipeline_parallel": 2, "virtual_stages": 2, "micro_batches": 8})
    assert activations(vpp) > activations(pp)


@pytest.mark.parametrize("recipe", ["fsdp2", "deepspeed"])
def test_expert_parallel_holds_fewer_experts_at_once(recipe):
    dp = run({"recipe": recipe, "data_parallel": 4}, MOE)
    ep = run({"recipe": recipe, "data_parallel": 2, "expert_parallel": 2}, MOE)
    assert activations(ep) < activations(dp) or states(ep) < states(dp)


@pytest.mark.parametrize("recipe,zero", [("fsdp2", 3), ("deepspeed", 2)])
def test_offload_moves_states_to_the_host(recipe, zero):
    on = run({"recipe": recipe, "data_parallel": 8, "zero_stage": zero})
    off = run({"recipe": recipe, "data_parallel": 8, "zero_stage": zero, "offload_optimizer": "cpu"})
    assert states(off) < states(on) and off["host_bytes"] > 0 == on.get("host_bytes", 0)


# ---- recomputation changes activations in every recipe that has them -------------------------------

@pytest.mark.parametrize("recipe", ["fsdp2", "deepspeed", "hf", "megatron", "playbook"])
@pytest.mark.parametrize("model", [BASE, MOE])
def test_full_recompute_keeps_fewer_activations_than_none(recipe, model):
    if recipe in ("hf", "playbook") and model is MOE:
        par = {"recipe": recipe}
    else:
        par = {"recipe": recipe, "expert_parallel": 2} if model is MOE else {"recipe": recipe}
    none = activations(run({**par, "recompute": "none"}, model))
    sel = activations(run({**par, "recompute": "selective"}, model))
    full = activations(run({**par, "recompute": "full"}, model))
    assert full < none and sel <= none


# ---- mixed-precision variants, as the recipes express them -----------------------------------------

def test_sixteen_bit_parameters_with_fp32_gradients_are_eighteen_bytes_a_parameter():
    # Megatron's docs/user-guide/features/dist_optimizer.md: bf16 parameters, fp32 gradients: 18 bytes
    # (2 + 4 + 4 master + 8 Adam); fp16 parameters and gradients: 20 (2 + 2 + 16)
    assert states(run({"recipe": "megatron"})) == pytest.approx(18 * P, rel=2e-3)
    fp16 = {**BASE, "precision": {"weights": "fp32", "autocast": "fp16"}}
    assert states(run({"recipe": "megatron"}, fp16)) == pytest.approx(20 * P, rel=2e-3)
    # DeepSpeed's bf16 engine with data_types.grad_accum_dtype fp32 under ZeRO-1 on one rank: the same 18
    ds = run({"recipe": "deepspeed", "zero_stage": 1, "options": {"grad_accum_dtype": "fp32"}})
    assert states(ds) == pytest.approx(18 * P, rel=1e-6)


def test_fsdp2_keeps_fp32_shards_and_gathers_bf16_compute_copies():
    res = run({"recipe": "fsdp2", "data_parallel": 4})
    assert states(res) == pytest.approx(16 * P / 4, rel=1e-6)         # fp32 parameters, gradients, AdamW
    from pycore.estimate import estimate as typed
    from pycore.request.parse import parse_request
    req = parse_request({**BASE, "parallelism": {"recipe": "fsdp2", "data_parallel": 4}})
    e = typed(req.model, req.workload, req.precision, req.hardware, req.framework, req.parallelism)
    fwd = dict(next(s for s in e.snapshots if s.phase == "forward").parts)
    gathered = sum(v for k, v in fwd.get("buffers", {}).items() if "gathered blocks" in k) or sum(
        v for part in fwd.values() for k, v in part.items() if "gathered blocks" in k)
    h = 2048
    layer = 2 * h * h + 2 * h * (8 * 64) + 3 * h * 8192 + 2 * h        # q and o, k and v (8 KV heads), MLP, norms
    assert gathered == 3 * 2 * layer                                    # three bf16 blocks (current, buffer, next)


def test_megatrons_precision_aware_optimizer_dtypes_set_the_bytes_a_parameter():
    # bf16 parameters 2, bf16 main gradients 2, fp32 main parameters 4, bf16 moments 2 + 2: 12 bytes
    opts = {"main_grads_dtype": "bf16", "exp_avg_dtype": "bf16", "exp_avg_sq_dtype": "bf16"}
    twelve = run({"recipe": "megatron", "options": opts})
    assert ratio(states(twelve), states(run({"recipe": "megatron"}))) == pytest.approx(12 / 18, rel=1e-6)
    # with the distributed optimizer over 8 ranks: 2 + 2 + 8/8
    dist = run({"recipe": "megatron", "data_parallel": 8, "zero_stage": 1, "options": opts})
    assert ratio(states(dist), states(twelve)) == pytest.approx((2 + 2 + 8 / 8) / 12, rel=1e-6)
    fp16 = {**BASE, "precision": {"weights": "fp32", "autocast": "fp16"}}
    assert refused({"recipe": "megatron", "options": opts}, fp16) == "parallelism.options.main_grads_dtype"
