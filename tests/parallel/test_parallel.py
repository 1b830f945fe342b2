"""Multi-GPU layouts (issue 9): what each GPU holds, checked against arithmetic done by hand here,
against the ZeRO paper's accounting, and against the constraints the frameworks enforce."""

import json

import pytest

from pycore.api import estimate
from pycore.data.catalog import catalog_model
from pycore.model.layout import Parallelism
from pycore.model.shard import padded_vocab, rank_params
from pycore.parallel.stages import in_flight

GiB = 2 ** 30
P8B = 8_030_261_248          # Llama-3.1-8B


def call(req) -> dict:
    resp = json.loads(estimate(json.dumps(req)))
    assert resp["status"] == "ok", resp
    return resp["result"]


def error(req) -> dict:
    resp = json.loads(estimate(json.dumps(req)))
    assert resp["status"] == "error", resp
    return resp["errors"][0]


def step(parallelism=None):
    req = {"model": "llama-3.1-8b", "workload": {"batch_size": 1, "seq_len": 256, "gradient_checkpointing": True}}
    if parallelism:
        req["parallelism"] = parallelism
    res = call(req)
    return next(p["bytes"] for p in res["phases"] if p["phase"] == "optimizer step")


# ---- data parallelism and ZeRO (Rajbhandari et al. 2020, section 5) -------------------------

def test_no_parallelism_is_weights_grads_states_and_foreach_buffer():
    assert step() == 2 * P8B + 2 * P8B + 4 * P8B + 2 * P8B


def test_defaults_keep_the_single_gpu_answer_exactly():
    base = {"model": "qwen3-8b", "workload": {"mode": "lora", "batch_size": 2, "seq_len": 1024}}
    one = call(base)
    for par in ({}, {"recipe": "hf"}, {"recipe": "hf", "data_parallel": 1, "tensor_parallel": 1, "zero_stage": 0}):
        same = call({**base, "parallelism": par})
        assert same["device_total_bytes"] == one["device_total_bytes"]
        assert same["breakdown"] == one["breakdown"]


def test_ddp_adds_gradient_buckets():
    assert step({"data_parallel": 8, "zero_stage": 0}) == step() + 2 * P8B


def test_zero_stages_shard_states_then_gradients_then_weights():
    n = 8
    z1 = step({"data_parallel": n, "zero_stage": 1})
    z2 = step({"data_parallel": n, "zero_stage": 2})
    z3 = step({"data_parallel": n, "zero_stage": 3})
    assert abs(z1 - (2 * P8B + 2 * P8B + (4 * P8B + 2 * P8B) / n)) < 64
    assert abs(z2 - (2 * P8B + (2 * P8B + 4 * P8B + 2 * P8B) / n)) < 64
    assert z3 < z2 - 2 * P8B * (1 - 1 / n) + 2 * 2 * P8B / 32 + 64     # weights sharded, two layers gathered


def test_the_zero_paper_recipe_reproduces_figure_1_by_hand():
    psi, nd = 7_500_000_000, 64
    for stage, expected in ((0, 16 * psi), (1, 4 * psi + 12 * psi / nd), (2, 2 * psi + 14 * psi / nd), (3, 16 * psi / nd)):
        res = call({"model": {"parameters": psi}, "parallelism": {"recipe": "zero-paper", "data_parallel": nd,
                                                                  "zero_stage": stage}})
        assert abs(res["model_states_bytes"] - expected) <= 2, stage
        assert "activations" in res["not_estimated"]


# ---- what one rank holds ----------------------------------------------------------------------

def test_tensor_parallel_splits_columns_and_rows_and_replicates_norms():
    m = catalog_model("llama-3.1-8b")
    h, f, V, t = 4096, 14336, 128256, 8
    r = rank_params(m, t=t)
    attention = (h * h + 2 * h * 1024 + h * h) // t          # q, k, v column-parallel; o row-parallel
    mlp = 3 * h * f // t                                     # gate, up column; down row
    norms = 2 * h                                            # replicated on every tensor rank
    assert r.dense_layer.dense == attention + mlp + norms
    assert r.embedding == V // t * h and r.head == h + V // t * h
    assert r.total() == 32 * (attention + mlp + norms) + 2 * (V // t) * h + h


def test_pipeline_stages_hold_their_layers_with_the_embedding_first_and_the_head_last():
    m = catalog_model("llama-3.1-8b")
    first, last = rank_params(m, p=4, stage=0), rank_params(m, p=4, stage=3)
    per_layer = 4096 * 4096 * 2 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096
    assert first.layers == last.layers == 8
    assert first.total() == 8 * per_layer + 128256 * 4096
    assert last.total() == 8 * per_layer + 4096 + 128256 * 4096


def test_a_tied_output_layer_is_a_copy_on_the_last_stage():
    m = catalog_model("qwen2.5-0.5b")                           # tie_word_embeddings
    assert rank_params(m, p=1).head == 896                    # one GPU: the final norm only
    assert rank_params(m, p=2, stage=1).head == 896 + 151936 * 896


def test_expert_parallel_divides_the_experts():
    m = catalog_model("mixtral-8x7b")
    r = rank_params(m, e=4)
    assert r.moe_layer.expert == 2 * 3 * 4096 * 14336         # 2 of 8 experts, gate+up+down
    assert r.moe_layer.dense - rank_params(m).moe_layer.dense == 0


def test_megatron_pads_the_vocabulary_to_128_times_tp():
    assert padded_vocab(50257, 1, 128) == 50304 and padded_vocab(32000, 4, 128) == 32256
    assert padded_vocab(128256, 2, 128) == 128256          # 1002 x 128 is a multiple of 2 x 128
    assert padded_vocab(128256, 4, 128) == 251 * 512       # but not of 512: 250.5, rounded up
    assert padded_vocab(128256, 8, 128) == 126 * 1024      # 128256 / 1024 = 125.25, rounded up


@pytest.mark.parametrize("p,m,stage,expected", [(4, 8, 0, 4), (4, 8, 3, 1), (4, 2, 0, 2), (8, 64, 2, 6)])
def test_1f1b_stage_r_holds_min_p_minus_r_micro_batches(p, m, stage, expected):
    assert in_flight(Parallelism(pipeline_parallel=p, micro_batches=m), stage) == expected


def test_interleaving_holds_one_plus_p_minus_one_over_pv_of_the_stage():
    # p=4, v=2, m large: stage 0 runs 2(p-1) + (v-1)p + 1 = 11 chunk-micro-batches of L/(p v) layers
    par = Parallelism(pipeline_parallel=4, virtual_stages=2, micro_batches=64)
    assert in_flight(par, 0) == 6                              # ceil(11 / 2) whole-stage micro-batches


# ---- activations ------------------------------------------------------------------------------

LLAMA = {"model": "llama-3.2-1b", "workload": {"batch_size": 2, "seq_len": 2048}, "precision": {"weights": "bf16"}}


def _leaf(res, name):
    acts = next(c for c in res["breakdown"]["children"][0]["children"] if c["name"] == "activations")
    return sum(c["bytes"] for c in acts["children"] if name in c["name"])


def test_sequence_parallelism_splits_norm_activations_by_tp():
    tp = call({**LLAMA, "parallelism": {"recipe": "fsdp2", "tensor_parallel": 4}})
    sp = call({**LLAMA, "parallelism": {"recipe": "fsdp2", "tensor_parallel": 4, "sequence_parallel": True}})
    no = _leaf(tp, "input norm fp32 input")
    assert no == 16 * 2 * 2048 * 2048 * 4                     # 16 layers x tokens x hidden x fp32, replicated
    assert _leaf(sp, "input norm fp32 input") == no // 4
    assert _leaf(sp, "attention q, k after rotary") == _leaf(tp, "attention q, k after rotary")   # split by TP anyway


def test_selective_recompute_keeps_no_attention_scores():
    eager = {**LLAMA, "workload": {**LLAMA["workload"], "attention": "eager"}}
    none = call({**eager, "parallelism": {"recipe": "deepspeed", "recompute": "none"}})
    sel = call({**eager, "parallelism": {"recipe": "deepspeed", "recompute": "selective"}})
    assert _leaf(none, "attention scores") == 16 * 2 * 32 * 2048 * 2048 * (4 + 1 + 2)   # fp32 softmax, mask, probs
    assert _leaf(sel, "attention scores") == 0
    assert sel["peak_allocated_bytes"] < none["peak_allocated_bytes"]


def test_context_parallel_splits_the_sequence_and_adds_ring_buffers():
    from pycore.estimate import estimate as typed
    from pycore.request.parse import parse_request
    req = parse_request({**LLAMA, "parallelism": {"recipe": "fsdp2", "context_parallel": 4}})
    e = typed(req.model, req.workload, req.precision, req.hardware, req.framework, req.parallelism)
    layer = next(s for s in e.snapshots if s.moment == "layer 15 backward")
    temps = dict(layer.parts)["temporaries"]
    tokens = 2 * 2048 // 4
    # PyTorch's ring attention (parallel/torch_cp.py): the local K and V (8 heads x 64, bf16, torchtitan
    # 0.2.2 no longer repeats them) and, all-gathered, those of the 4 CP ranks
    assert temps["ring attention: local K and V concatenated to send"] == 2 * tokens * (8 * 64) * 2
    assert temps["ring attention: K and V of every CP rank (all-gather rotater)"] == 4 * 2 * tokens * (8 * 64) * 2
    res = call({**LLAMA, "parallelism": {"recipe": "fsdp2", "context_parallel": 4}})
    one = call({**LLAMA, "parallelism": {"recipe": "fsdp2"}})
    assert _leaf(res, "input norm fp32 input") == _leaf(one, "input norm fp32 input") // 4


def test_full_recompute_every_k_layers_keeps_one_input_per_block():
    res = call({**LLAMA, "parallelism": {"recipe": "deepspeed", "recompute": "full", "recompute_layers": 4}})
    # 16 layers in blocks of 4: the inputs of blocks 0, 4, 8 before layer 15's backward, plus its own
    assert _leaf(res, "checkpointed layer inputs") == 4 * 2 * 2048 * 2048 * 2


def test_gradient_accumulation_keeps_gradients_through_forward():
    one = call({**LLAMA, "parallelism": {"recipe": "hf"}})
    acc = call({**LLAMA, "parallelism": {"recipe": "hf", "gradient_accumulation": 4}})
    fwd = lambda r: next(p["bytes"] for p in r["phases"] if p["phase"] == "forward")     # noqa: E731
    assert fwd(acc) - fwd(one) == 2 * 1_235_814_400        # every bf16 gradient of Llama-3.2-1B


# ---- recipes' model states ---------------------------------------------------------------------------

def test_fsdp2_holds_sixteen_bytes_a_parameter_over_the_shard_group():
    res = call({"model": "llama-3.1-8b", "workload": {"seq_len": 1024}, "precision": {"weights": "fp32", "autocast": "bf16"},
                "parallelism": {"recipe": "fsdp2", "data_parallel": 8}})
    assert abs(res["model_states_bytes"] - 16 * P8B / 8) < 1024


def test_zero_offload_puts_sixteen_bytes_a_parameter_on_each_nodes_host():
    res = call({"model": "llama-3.1-8b", "workload": {"seq_len": 1024}, "parallelism": {
        "recipe": "deepspeed", "data_parallel": 16, "zero_stage": 2, "offload_optimizer": "cpu"}})
    # fp32 master weights, fp32 gradients and two Adam states for 1/16 of the parameters, 8 ranks a node
    assert abs(res["host_bytes"] - 16 * P8B / 16 * 8) < 1024
    assert res["model_states_bytes"] < 2 * P8B + 2 ** 20


def test_deepspeed_estimator_before_and_after_pr5099():
    P = 2_851_000_000
    def gpu(version):
        return call({"model": {"parameters": P}, "parallelism": {"recipe": "deepspeed-estimator", "data_parallel": 8,
                                                                 "zero_stage": 2, "options": {"version": version}}}
                    )["model_states_bytes"]
    assert gpu("before-pr5099") == 4 * P + int(16 * P / 8)
    assert gpu("current") == 2 * P + int(18 * P / 8)


def test_the_layout_names_the_most_loaded_rank():
    res = call({"model": "llama-3.1-8b", "workload": {"seq_len": 4096}, "parallelism": {
        "recipe": "fsdp2", "pipeline_parallel": 4, "micro_batches": 8, "recompute": "full"}})
    assert res["layout"]["gpus"] == 4 and res["layout"]["most_loaded"]["stage"] in (0, 1, 3)
    # torchtitan's split: 32 + 2 effective layers over 4 stages is 9, 9, 8, 8; the embedding takes one
    # of the first stage's and the output layer one of the last's; stage 2 (8 layers, 2 micro-batches in
    # flight) is dominated by stage 1 (9 layers, 3 in flight) and not evaluated
    assert [(s["stage"], s["layers"]) for s in res["layout"]["stages"]] == [(0, 8), (1, 9), (3, 7)]
    assert res["per_gpu"] == res["breakdown"]


# ---- constraints -----------------------------------------------------------------------------------

@pytest.mark.parametrize("par,field", [
    ({"tensor_parallel": 3}, "parallelism.tensor_parallel"),                 # 32 heads
    ({"recipe": "fsdp2", "pipeline_parallel": 17}, "parallelism.pipeline_parallel"),  # 16 layers: one a stage at most
    ({"recipe": "fsdp2", "expert_parallel": 2}, "parallelism.expert_parallel"),       # a dense model
    ({"recipe": "fsdp2", "context_parallel": 3}, "parallelism.context_parallel"),     # 2048 not divisible by 6
    ({"offload_optimizer": "cpu"}, "parallelism.offload_optimizer"),         # the hf recipe does not offload
    ({"recipe": "megatron", "zero_stage": 3}, "parallelism.zero_stage"),
    ({"recipe": "fsdp2", "pipeline_parallel": 2, "pipeline_layers": [10, 7]}, "parallelism.pipeline_layers"),
    ({"recipe": "nope"}, "parallelism.recipe"),
    ({"recipe": "deepspeed", "options": {"reduce_bucket": 1}}, "parallelism.options.reduce_bucket"),
])
def test_a_layout_a_framework_refuses_is_an_error_naming_the_field(par, field):
    assert error({**LLAMA, "parallelism": par})["field"] == field


def test_an_uneven_pipeline_split_is_accepted_and_each_stage_evaluated():
    res = call({**LLAMA, "parallelism": {"recipe": "fsdp2", "pipeline_parallel": 2, "pipeline_layers": [10, 6]}})
    assert [s["layers"] for s in res["layout"]["stages"]] == [10, 6]


# ---- the layout search -------------------------------------------------------------------------------

def test_plan_finds_the_fewest_gpus_for_a_7b_full_fine_tune():
    # 6.74 B parameters in mixed precision: 16 bytes each is 108 GB of model states, over one 80 GB card
    base = {"model": "llama-2-7b", "workload": {"mode": "full", "seq_len": 2048},
            "precision": {"weights": "fp32", "autocast": "bf16"}, "gpu": "a100-80gb", "plan": {"global_batch": 64}}
    one = call({k: v for k, v in base.items() if k != "plan"})
    assert not one["fits"] and one["model_states_bytes"] > 16 * 6_738_415_616 * 0.99
    for recipe in ("hf", "deepspeed", "fsdp2", "megatron"):
        res = call({**base, "parallelism": {"recipe": recipe}})
        assert res["plan"]["gpus"] == 2, recipe
        assert res["fits"] and res["layout"]["gpus"] == 2


def test_every_layout_of_n_gpus_multiplies_to_n_and_is_ranked():
    res = call({"model": "qwen3-30b-a3b", "workload": {"seq_len": 4096}, "parallelism": {"recipe": "megatron"},
                "plan": {"gpus": 64, "limit": 100000}})
    rows = res["plan"]["layouts"]
    assert len(rows) == res["plan"]["count"] > 100
    for r in rows:
        d = r["degrees"]
        assert d["data"] * d["tensor"] * d["pipeline"] * d["context"] * d["expert"] == 64
        assert 128 % d["expert"] == 0 and 4 % d["tensor"] == 0             # experts, KV heads
    fits = [r["fits"] for r in rows]
    assert fits == sorted(fits, reverse=True)


def test_expert_parallelism_adds_the_all_to_all_dispatch_buffers():
    from pycore.estimate import estimate as typed
    from pycore.request.parse import parse_request
    req = parse_request({"model": "mixtral-8x7b", "workload": {"seq_len": 1024},
                         "parallelism": {"recipe": "fsdp2", "expert_parallel": 4, "data_parallel": 2}})
    e = typed(req.model, req.workload, req.precision, req.hardware, req.framework, req.parallelism)
    layer = next(s for s in e.snapshots if s.moment == "layer 31 backward")
    temps = dict(layer.parts)["temporaries"]
    # the routed tokens before and after the exchange: 1024 tokens x 2 experts each x 4096 x bf16, twice
    assert temps["expert all-to-all buffers (before and after dispatch)"] == 2 * 1024 * 2 * 4096 * 2
