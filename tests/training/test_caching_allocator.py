"""The caching allocator's replay (pycore/training/caching.py) against CUDACachingAllocator.cpp's rules,
worked by hand, and PYTORCH_CUDA_ALLOC_CONF as an input."""

import json
from pathlib import Path

import pytest

from pycore.api import estimate_dict
from pycore.errors import InputError
from pycore.training.caching import AllocConf, allocation_size, parse_alloc_conf, replay, round_size

MiB = 1 << 20
# The shared calibration next to the checkout (or next to the folder of worktrees).
CALIBRATION = next((base / "shared" / "calibration" / "h100-hf-transformers.jsonl" for base in Path(__file__).resolve().parents[2:5]
                    if (base / "shared" / "calibration" / "h100-hf-transformers.jsonl").exists()), Path("/nonexistent"))


def test_requests_are_rounded_to_512_bytes_or_to_power_of_two_divisions():
    assert round_size(1) == 512 and round_size(512) == 512 and round_size(513) == 1024
    # roundup_power2_divisions:4 - 1.3e9 lies between 2^30 and 2^31; the steps are 2^30 / 4 = 268435456,
    # so it goes up to 2^30 + 268435456 = 1342177280.
    assert round_size(1_300_000_000, AllocConf(roundup_power2_divisions=4)) == 1_342_177_280
    assert round_size(1 << 30, AllocConf(roundup_power2_divisions=4)) == 1 << 30


def test_segments_are_2_mib_20_mib_or_the_request_rounded_to_2_mib():
    assert allocation_size(1 * MiB) == 2 * MiB          # small pool
    assert allocation_size(5 * MiB) == 20 * MiB         # 1-10 MiB share a 20 MiB segment
    assert allocation_size(10 * MiB) == 10 * MiB        # >= kMinLargeAlloc: rounded to 2 MiB
    assert allocation_size(11 * MiB + 1) == 12 * MiB


def test_mid_sized_requests_share_a_20_mib_segment_and_a_larger_one_gets_its_own():
    # 5 MiB -> a 20 MiB segment, split (15 MiB left > 1 MiB); the next 5 MiB comes from the 15 MiB;
    # 12 MiB does not fit the 10 MiB left: a new 12 MiB segment. 20 + 12 = 32 MiB.
    r = replay((("+", "a", 5 * MiB), ("+", "b", 5 * MiB), ("+", "c", 12 * MiB)))
    assert r.peak_reserved_bytes == 32 * MiB and r.peak_allocated_bytes == 22 * MiB


FRAGMENT = (("+", "a", 100 * MiB), ("-", "a"), ("+", "b", 60 * MiB), ("+", "c", 60 * MiB))


def test_a_freed_block_split_by_a_smaller_request_cannot_take_a_second_one():
    # b takes 60 of a's cached 100 MiB; the 40 left cannot hold c: a new 60 MiB segment, 160 MiB reserved.
    assert replay(FRAGMENT).peak_reserved_bytes == 160 * MiB


def test_expandable_segments_map_20_mib_pages_onto_the_free_end():
    # One segment: a maps 100 MiB; c finds the 40 MiB free at the end and maps one more 20 MiB page.
    conf = parse_alloc_conf("expandable_segments:True")
    assert replay(FRAGMENT, conf).peak_reserved_bytes == 120 * MiB


def test_max_split_size_keeps_oversize_blocks_whole():
    events = (("+", "a", 100 * MiB), ("-", "a"), ("+", "b", 60 * MiB), ("+", "c", 30 * MiB))
    # Default: b splits a's block, c takes 30 of the 40 MiB left: 100 MiB reserved.
    assert replay(events).peak_reserved_bytes == 100 * MiB
    # max_split_size_mb:50: the 100 MiB block is oversize; b (60 >= 50) may use it only if it is under
    # 60 + 20 MiB, so b gets a new 60 MiB segment, and c (30 < 50) may not use an oversize block:
    # 100 + 60 + 30 = 190 MiB.
    assert replay(events, parse_alloc_conf("max_split_size_mb:50")).peak_reserved_bytes == 190 * MiB


@pytest.mark.parametrize("text", ["expandable_segments:yes", "max_split_size_mb:10", "max_split_size_mb:x",
                                  "roundup_power2_divisions:3", "garbage_collection_threshold:1.5", "foo:1",
                                  "expandable_segments"])
def test_bad_alloc_conf_names_the_field(text):
    with pytest.raises(InputError) as e:
        parse_alloc_conf(text)
    assert "framework.alloc_conf" in str(e.value)
    resp = estimate_dict({"model": "gpt2", "workload": {"mode": "full", "batch_size": 1, "seq_len": 64},
                          "framework": {"alloc_conf": text}})
    assert resp["status"] == "error" and resp["errors"][0]["field"] == "framework.alloc_conf"


def _reserved(conf: str) -> tuple[int, int]:
    resp = estimate_dict({"model": "gpt2", "workload": {"mode": "full", "batch_size": 16, "seq_len": 1024,
                                                       "gradient_checkpointing": True},
                          "precision": {"weights": "fp32", "autocast": "bf16"}, "framework": {"alloc_conf": conf}})
    assert resp["status"] == "ok", resp
    return resp["result"]["peak_allocated_bytes"], resp["result"]["reserved_bytes"]


def test_expandable_segments_reserve_less_and_never_below_the_allocated_peak():
    allocated, default = _reserved("expandable_segments:False")
    same, expandable = _reserved("expandable_segments:True")
    assert same == allocated
    assert allocated <= expandable < default


@pytest.mark.skipif(not CALIBRATION.exists(), reason="shared/calibration not present")
def test_replayed_reserve_is_near_the_measured_one_on_most_training_runs():
    # Measured: torch.cuda.max_memory_reserved() of each training run in shared/calibration.
    from pycore.check.record import request_from_record
    errs = []
    for line in CALIBRATION.read_text().splitlines():
        rec = json.loads(line)
        if rec["measured"]["status"] != "ok" or rec["workload"]["mode"] == "inference":
            continue
        req = request_from_record(rec)
        req["framework"] = {**req.get("framework", {}), "alloc_conf": "expandable_segments:False"}
        res = estimate_dict(req)["result"]
        errs.append(abs(res["reserved_bytes"] - rec["measured"]["peak_reserved_bytes"]) / rec["measured"]["peak_reserved_bytes"])
    errs.sort()
    assert len(errs) >= 30
    assert errs[len(errs) // 2] < 0.02          # median within 2%
    assert sum(e <= 0.10 for e in errs) >= 0.85 * len(errs)


def test_the_fast_default_replay_and_the_general_one_agree(monkeypatch):
    # The traces of real steps (gpt2 with checkpointing and Qwen2.5-0.5B LoRA), replayed by both loops,
    # and a hand-made one with merges on both sides.
    from pycore.training import allocator, caching
    traces = [FRAGMENT, (("+", "a", 5 * MiB), ("+", "b", 5 * MiB), ("+", "c", 12 * MiB), ("-", "b"), ("-", "a"),
                         ("+", "d", 9 * MiB), ("+", "e", 3 * MiB), ("-", "c"), ("+", "f", 40 * MiB))]
    real = allocator.replayed_overhead_bytes
    monkeypatch.setattr(allocator, "replayed_overhead_bytes", lambda t, c="": traces.append(t) or real(t, c))
    for model, mode, ckpt in (("gpt2", "full", True), ("qwen2.5-0.5b", "lora", False)):
        resp = estimate_dict({"model": model, "workload": {"mode": mode, "batch_size": 8, "seq_len": 1024,
                                                           "gradient_checkpointing": ckpt},
                              "framework": {"alloc_conf": "expandable_segments:False"}})
        assert resp["status"] == "ok"
    assert len(traces) == 4 and all(len(t) > 100 for t in traces[2:])
    for events in traces:
        fast = caching._replay_default(events)
        pool = caching._Pool(AllocConf())
        for ev in events:
            if ev[0] == "+":
                size = round_size(ev[2])
                if size > caching.K_SMALL_SIZE:
                    pool.malloc(ev[1], size)
            else:
                pool.free(ev[1])
        assert (fast.peak_allocated_bytes, fast.peak_reserved_bytes) == (pool.peak_allocated, pool.peak_reserved)


def test_lora_with_checkpointing_takes_its_own_share_on_its_recomputed_activations_only():
    # A backward moment of a frozen-base run with checkpointing: 10 GiB of weights, 2 GiB of activations,
    # 6 GiB of logits and loss. With the fitted shares (LoRA recompute 0.193, training 0.055, full-training
    # checkpointing 0.573): reserved = 18 + 0.193 x 2 + 0.055 x 6 = 18.716 GiB; full training (base
    # trainable) keeps one share of all churn: 18 + 0.573 x 8 = 22.584 GiB.
    from dataclasses import replace
    from pycore.training.allocator import RECIPE_SHARES, _reserved_at, fitted_shares
    from pycore.training.context import StepContext
    from pycore.training.timeline import Snapshot
    G = 1 << 30
    snap = Snapshot("backward", "a layer recomputed", (("weights", {"w": 10 * G}), ("activations", {"a": 2 * G}),
                                                       ("logits and loss", {"l": 6 * G})))
    ctx = StepContext(batch=1, seq=1, tokens=1, weight_bytes=2, compute_bytes=2, residual_bytes=2, amp=False, fp16=False,
                      training=True, base_trainable=False, adapted=frozenset(), adapter_bytes=4, kernel="flash",
                      checkpointing=True)
    assert _reserved_at(snap, ctx, fitted_shares()) == 18 * G + int(2 * G * 0.193) + int(6 * G * 0.055)
    assert _reserved_at(snap, replace(ctx, base_trainable=True), fitted_shares()) == 18 * G + int(8 * G * 0.573)
    # DeepSpeed and FSDP2 keep round 1's shares: 18 + 0.27 x 8 = 20.16 GiB for the base-trainable moment
    assert _reserved_at(snap, replace(ctx, base_trainable=True), RECIPE_SHARES) == 18 * G + int(8 * G * 0.27)
