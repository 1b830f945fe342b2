"""Version rules, heads and optimizers of issue 13: each checked against the library source's
behaviour, with the arithmetic done here."""

import json
import subprocess
import sys
from pathlib import Path

from pycore.api import estimate_dict
from pycore.versions import RULES, holds

ROOT = Path(__file__).resolve().parent.parent
MiB = 2 ** 20


def run(**req):
    resp = estimate_dict({"gpu": "h100-sxm-80gb", **req})
    assert resp["status"] == "ok", resp
    return resp["result"]


def part(result, category, name):
    for c in result["breakdown"]["children"][0]["children"]:
        if c["name"] == category:
            return {x["name"]: x["bytes"] for x in c.get("children", [])}.get(name, 0)
    return 0


def test_rules_have_ranges_sources_and_hold_where_they_say():
    for r in RULES:
        assert r.source and r.effect and (r.since or r.until), r.name
    assert holds("legacy-tuple-cache", (4, 41, 3)) and not holds("legacy-tuple-cache", (4, 42, 0))
    assert holds("vllm-cuda-graphs-in-budget", (0, 20, 0)) and not holds("vllm-cuda-graphs-in-budget", (0, 19, 9))
    assert holds("llamacpp-iswa", (5400,)) and not holds("llamacpp-iswa", (5050,))


def test_cuda_context_follows_the_torch_version():
    new = run(model="gpt2", workload={"mode": "full"})
    old = run(model="gpt2", workload={"mode": "full"}, framework={"torch": "1.12"})
    assert new["assumptions"]["cuda_context_bytes"] == 820 * MiB
    assert old["assumptions"]["cuda_context_bytes"] == 1343 * MiB
    assert old["device_total_bytes"] - new["device_total_bytes"] >= (1343 - 820) * MiB
    mine = run(model="gpt2", workload={"mode": "full"}, framework={"cuda_context_bytes": 123})
    assert mine["assumptions"]["cuda_context_bytes"] == 123


def test_zero_grad_before_torch_2_keeps_gradients_through_forward():
    # torch < 2.0: zero_grad() zeroes instead of freeing, so the forward pass already holds every gradient.
    # eager attention for both: before torch 2.0 there is no SDPA (rule hf-sdpa-attention), so only the
    # gradients differ
    req = dict(model="llama-3.2-1b", workload={"mode": "full", "batch_size": 1, "seq_len": 256, "attention": "eager"},
               precision={"weights": "fp32"})
    new = run(**req)
    old = run(**req, framework={"torch": "1.13"})
    fwd_new = next(p["bytes"] for p in new["phases"] if p["moment"] == "last layer's forward")
    fwd_old = next(p["bytes"] for p in old["phases"] if p["moment"] == "last layer's forward")
    assert fwd_old - fwd_new == 4 * new["params"]["total"]              # fp32 gradients of every parameter
    explicit = run(**req, framework={"torch": "2.11", "zero_grad_set_to_none": False})
    assert next(p["bytes"] for p in explicit["phases"] if p["moment"] == "last layer's forward") == fwd_old


def test_classification_heads_drop_the_vocabulary():
    # LlamaForSequenceClassification: no lm_head (128,256 x 4,096), a score of 4,096 x 3 without bias.
    lm = run(model="llama-3.1-8b", workload={"mode": "full", "seq_len": 512}, precision={"weights": "bf16"})
    cls = run(model="llama-3.1-8b", workload={"mode": "full", "seq_len": 512, "head": "sequence-classification",
                                              "num_labels": 3}, precision={"weights": "bf16"})
    assert lm["params"]["total"] - cls["params"]["total"] == 128256 * 4096 - 3 * 4096
    assert cls["device_total_bytes"] < lm["device_total_bytes"]
    # BertForSequenceClassification (bert-base, 2 labels): 109,483,778 parameters (the model card's count)
    bert = run(model="bert-base", workload={"mode": "full", "head": "sequence-classification"},
               precision={"weights": "fp32"})
    assert bert["params"]["total"] == 109_483_778
    assert estimate_dict({"model": "gpt2", "workload": {"head": "masked-lm"}})["errors"][0]["field"] == "workload.head"


def test_paged_optimizer_states_are_on_the_device_but_not_in_the_allocator():
    work = {"mode": "full", "batch_size": 1, "seq_len": 128}
    plain = run(model="llama-3.2-1b", workload={**work, "optimizer": "adamw_8bit"}, precision={"weights": "bf16"})
    paged = run(model="llama-3.2-1b", workload={**work, "optimizer": "paged_adamw_8bit"}, precision={"weights": "bf16"})
    # every matrix of >= 1e5 elements: its two uint8 states (2 bytes per element) move to managed memory
    big = paged["device_total_bytes"] - plain["device_total_bytes"]
    assert paged["peak_allocated_bytes"] < plain["peak_allocated_bytes"]
    managed = {c["name"]: c["bytes"] for c in paged["breakdown"]["children"]}["outside the allocator"]
    assert abs(big) < 0.2 * managed                        # moved, not added: the device holds about the same
    assert managed > 2 * 0.9 * paged["params"]["total"]


def test_mla_caches_the_latent_from_transformers_5_15():
    # DeepSeek-V2-Lite: 27 layers; the latent is 512 + 64 per token and layer, 1,152 bytes in bf16; before
    # 5.15 the cache held 16 heads x (128 + 64 + 128) = 10,240 bytes per token and layer.
    req = dict(model="deepseek-v2-lite", workload={"mode": "inference", "batch_size": 1, "seq_len": 4096,
                                                   "new_tokens": 2})
    new = run(**req)
    old = run(**req, framework={"transformers": "5.12"})
    assert part(new, "KV cache", "KV cache") in (27 * 4096 * 1152, 27 * 4097 * 1152)
    assert part(old, "KV cache", "KV cache") in (27 * t * 16 * (128 + 64 + 128) * 2 for t in (4096, 4097))


def test_cli_takes_versions_and_heads():
    out = subprocess.run([sys.executable, "-m", "pycore", "estimate", "--model", "llama-3.2-1b", "--mode", "full",
                          "--torch-version", "1.12", "--transformers-version", "4.40", "--head",
                          "sequence-classification", "--num-labels", "5", "--json"],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    res = json.loads(out.stdout)
    assert res["assumptions"]["torch"] == "1.12" and res["assumptions"]["cuda_context_bytes"] == 1343 * MiB
