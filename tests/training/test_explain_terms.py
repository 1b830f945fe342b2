"""The explanations of the breakdown's terms (pycore/training/explain.py), a table with one numbers function per term: every
top-level category of a breakdown is explained, and each term's numbers are the run's, worked by hand."""

from pycore.api import estimate_dict
from pycore.estimate import estimate
from pycore.request.parse import parse_request
from pycore.training import explain


def _estimate(raw: dict):
    req = parse_request(raw)
    return estimate(req.model, req.workload, req.precision, req.hardware, req.framework, req.parallelism)


FULL = {"model": "llama-3.1-8b", "workload": {"mode": "full", "batch_size": 2, "seq_len": 1024},
        "precision": {"weights": "fp32", "autocast": "bf16"}, "gpu": "h100-sxm-80gb"}
GENERATE = {"model": "llama-3.1-8b", "workload": {"mode": "inference", "batch_size": 1, "seq_len": 1000,
                                                  "new_tokens": 25}, "gpu": "h100-sxm-80gb"}


def test_every_category_of_the_breakdown_is_explained():
    for raw in (FULL, GENERATE, {**FULL, "workload": {"mode": "lora", "gradient_checkpointing": True}}):
        out = explain.explanations(_estimate(raw))
        top = estimate_dict(raw)["result"]["breakdown"]["children"]
        allocated = next(c for c in top if c["name"] == "allocated at peak")
        categories = [c["name"] for c in top if c is not allocated] + [c["name"] for c in allocated["children"]]
        assert categories and set(categories) <= set(out), (categories, list(out))
        assert all(set(entry) == {"what", "formula", "numbers"} for entry in out.values())


def test_the_logits_term_shows_the_runs_numbers():
    # 2 x 1024 x 128,256 x (2 + 4) = 1,576,009,728 bytes = 1.47 GiB
    numbers = explain.logits_numbers(_estimate(FULL))
    assert numbers == "2 x 1024 x 128,256 x (2 + 4) = 1.47 GiB"


def test_adamw_keeps_eight_bytes_per_trainable_parameter():
    # two fp32 moments: 2 x 4 bytes per parameter; Llama-3.1-8B has 8,030,261,248 parameters
    numbers = explain.optimizer_numbers(_estimate(FULL))
    assert numbers.startswith("8,030,261,248 trainable x 8 bytes = ")


def test_the_kv_cache_term_counts_the_tokens_cached_at_the_last_step():
    # prompt 1000 + 25 new tokens - 1 = 1024 cached; 32 layers, 8 KV heads of 128, bf16:
    # 1 x 1024 x 32 x 2 x 8 x 128 x 2 = 134,217,728 bytes = 0.12 GiB
    numbers = explain.kv_cache_numbers(_estimate(GENERATE))
    assert numbers == "1 x 1024 x 32 x 2 x 8 x 128 x 2 = 0.12 GiB at the peak"


def test_the_cuda_context_is_what_the_device_total_adds_to_the_reserve():
    # 820 MiB with lazy module loading (torch 2.x): 820 / 1024 = 0.80 GiB
    assert explain.TERMS["CUDA context"].numbers(_estimate(FULL)) == "0.80 GiB"
