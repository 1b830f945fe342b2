"""vLLM 0.34's extensible KV cache: sized after warmup, utilization 1.0 by default (issue 20)."""

from pycore.api import estimate_dict
from pycore.serving.config import DEFAULT_VERSIONS
from pycore.serving.vllm_extensible import extensible_budget
from pycore.units import GiB
from pycore.versions import holds


def _serve(version, **work):
    req = {"model": "qwen2.5-7b", "gpu": "h100-sxm-80gb",
           "workload": {"mode": "serve", "engine": "vllm", "version": version, "max_model_len": 32768, **work}}
    out = estimate_dict(req)
    assert out["status"] == "ok", out
    return out["result"]


def test_budget_follows_measure_kv_cache_bytes_by_hand():
    # extensible_kv_cache.py:592-618 @0.34.0 with made-up round figures (GiB):
    # total 80 x 1.0 = 80 requested; free at start 79; weights + non-torch + graphs 16; transient peak 2.
    # headroom = 79 - 16 = 63; margin = max(1, 0.75 x 2) = 1.5; min(80 - 16, 63 - 1.5) - 2 = 59.5
    b = extensible_budget(80 * GiB, 79 * GiB, 16 * GiB, 2 * GiB)
    assert b["available"] == int(59.5 * GiB)
    assert b["margin"] == int(1.5 * GiB)


def test_budget_margin_has_a_one_gib_floor_and_a_utilization_cap():
    # transient 0.4 GiB: margin max(1, 0.3) = 1; utilization 0.5 of 80 caps: min(40 - 16, 63 - 1) - 0.4 = 23.6
    b = extensible_budget(40 * GiB, 79 * GiB, 16 * GiB, int(0.4 * GiB))
    assert b["margin"] == GiB
    assert b["available"] == 24 * GiB - int(0.4 * GiB)
    assert extensible_budget(GiB, 79 * GiB, 16 * GiB, GiB)["available"] == 0


def test_the_rule_starts_at_0_34_and_the_default_is_the_newest_release():
    assert holds("vllm-extensible-kv-cache", (0, 34, 0)) and not holds("vllm-extensible-kv-cache", (0, 33, 0))
    assert DEFAULT_VERSIONS["vllm"] == "0.34.0"


def test_0_34_defaults_to_utilization_one_and_keeps_the_margin_free():
    r = _serve("0.34.0")
    assert r["settings"]["gpu_memory_utilization"] == 1.0
    assert r["report"]["available_kv_bytes"] > 0
    old = _serve("0.33.0")
    assert old["settings"]["gpu_memory_utilization"] == 0.92
    # on an 80 GiB card the 8% that 0.92 kept back is more than the 1 GiB margin and the transient peak
    assert r["kv_cache_tokens"] > old["kv_cache_tokens"]


def test_turning_it_off_or_giving_kv_cache_memory_falls_back_to_the_profile():
    off = _serve("0.34.0", enable_extensible_kv_cache=False)
    assert off["settings"]["gpu_memory_utilization"] == 0.92
    fixed = _serve("0.34.0", kv_cache_memory_bytes=10 * GiB)
    # 28 layers x 4 KV heads x 128 x 2 (K, V) x 2 bytes = 57,344 B a token; 10 GiB / (16 x 57,344) = 11,702
    # blocks; from 0.21 the logged tokens are int(concurrency x max_model_len) = blocks x 16 here
    assert fixed["kv_cache_tokens"] == 11702 * 16


def test_launch_command_round_trips_the_switch():
    from pycore.serving.commands import launch_command, read_command
    work = read_command("vllm serve Qwen/Qwen2.5-7B --no-enable-extensible-kv-cache", model_given=True)["workload"]
    assert work["enable_extensible_kv_cache"] is False
    line = launch_command("vllm", "Qwen/Qwen2.5-7B", {}, {"enable_extensible_kv_cache": False})
    assert line.endswith("--no-enable-extensible-kv-cache")


def test_from_0_30_the_sampler_of_fewer_than_8_rows_takes_the_triton_path():
    from pycore.serving.vllm_profile import sampler_parts
    # 4 rows of a 1,000-token vocabulary, bf16 logits, 132 SMs. Sort path (0.29): 28 bytes a logit.
    assert sum(sampler_parts((0, 29, 0), 4, 1000, 2, 132).values()) == 4 * 1000 * 28
    # Triton path (0.30): 14 bytes a logit, plus min(next_pow2(4), 132) = 4 fp32 rows of scratch
    assert sum(sampler_parts((0, 30, 0), 4, 1000, 2, 132).values()) == 4 * 1000 * 14 + 4 * 1000 * 4
