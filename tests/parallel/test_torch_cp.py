"""PyTorch's ring attention under torchtitan (recipe fsdp2): the all-gather rotater keeps every CP
rank's K and V, so the buffer grows with the CP degree at a fixed number of tokens per GPU; K/V carry
every query head until torchtitan 0.2.2 (repeat_kv, removed by PR #2259).

Byte counts by hand for Llama-3.2-1B (32 heads, 8 KV heads, head_dim 64) at TP 2, sequence 8192 over
CP ranks: per TP rank 16 query heads and 4 KV heads; tokens per GPU T = 8192 / cp."""

import pytest

from pycore.estimate import estimate as typed
from pycore.request.parse import parse_request
from pycore.versions import holds

GATHERED = "ring attention: K and V of every CP rank (all-gather rotater)"
RECEIVED = "ring attention: received K and V (all-to-all rotater)"
SENT = "ring attention: local K and V concatenated to send"


def buffers(cp, version="0.0.2", rotate="allgather", recipe="fsdp2"):
    par = {"recipe": recipe, "data_parallel": 1, "context_parallel": cp, "tensor_parallel": 2}
    if recipe == "fsdp2":
        par["options"] = {"torchtitan_version": version, "cp_rotate_method": rotate}
    req = parse_request({"model": "llama-3.2-1b", "workload": {"batch_size": 1, "seq_len": 8192},
                         "precision": {"weights": "fp32", "autocast": "bf16"}, "gpu": {"memory_gib": 1000},
                         "parallelism": par})
    e = typed(req.model, req.workload, req.precision, req.hardware, req.framework, req.parallelism)
    return {n: b for s in e.snapshots for _, d in s.parts if isinstance(d, dict) for n, b in d.items()
            if n.startswith("ring attention")}


def test_the_repeat_rule_holds_before_0_2_2_only():
    assert holds("torchtitan-repeats-kv", (0, 0, 2)) and holds("torchtitan-repeats-kv", (0, 2, 1))
    assert not holds("torchtitan-repeats-kv", (0, 2, 2))


def test_the_all_gathered_kv_grows_with_the_cp_degree_at_fixed_tokens_per_gpu():
    # T = 8192/4 = 2048 tokens; K and V repeated to 16 heads x 64: 2 x 2048 x 16 x 64 x 2 bytes = 8 MiB
    b4 = buffers(4)
    assert b4[SENT] == 2 * 2048 * 16 * 64 * 2 == 8 * 2 ** 20
    assert b4[GATHERED] == 4 * 8 * 2 ** 20                        # every rank's K and V
    # sequence 16384 over CP 8: the same 2048 tokens per GPU, twice the gathered K/V
    req8 = buffers_at(16384, 8)
    assert req8[SENT] == b4[SENT] and req8[GATHERED] == 8 * 8 * 2 ** 20


def buffers_at(seq, cp):
    req = parse_request({"model": "llama-3.2-1b", "workload": {"batch_size": 1, "seq_len": seq},
                         "precision": {"weights": "fp32", "autocast": "bf16"}, "gpu": {"memory_gib": 1000},
                         "parallelism": {"recipe": "fsdp2", "data_parallel": 1, "context_parallel": cp,
                                         "tensor_parallel": 2, "options": {"torchtitan_version": "0.0.2"}}})
    e = typed(req.model, req.workload, req.precision, req.hardware, req.framework, req.parallelism)
    return dict(next(s for s in e.snapshots if s.moment == "layer 0 backward").parts)["temporaries"]


def test_from_0_2_2_kv_keeps_its_own_heads():
    # 4 KV heads per TP rank: 2 x 2048 x 4 x 64 x 2 bytes = 2 MiB, gathered from 4 ranks = 8 MiB
    b = buffers(4, version="0.2.2")
    assert b[SENT] == 2 * 2 ** 20 and b[GATHERED] == 8 * 2 ** 20


def test_the_all_to_all_rotater_holds_one_received_kv_whatever_the_degree():
    b = buffers(4, rotate="alltoall")
    assert GATHERED not in b and b[RECEIVED] == b[SENT] == 8 * 2 ** 20


def test_the_fp32_backward_buffers_follow_the_source():
    b = buffers(4)
    q, kv = 2048 * 16 * 64, 2 * 2048 * 16 * 64
    assert b["ring attention: fp32 accumulators (merged output; dQ, dK, dV in backward)"] == 4 * (q + kv)
    assert b["ring attention: fp32 dK/dV sent and received (backward)"] == 2 * 4 * kv


def test_other_recipes_keep_the_point_to_point_ring():
    # DeepSpeed (layers.comm_buffers): the local K/V block and the one being received, KV heads only:
    # 2 x 2 x 2048 x (4 x 64) x 2 bytes = 4 MiB
    b = buffers(4, recipe="deepspeed")
    assert b["ring attention K/V buffers"] == 4 * 2 ** 20 and GATHERED not in b


def test_the_rotate_method_is_checked():
    with pytest.raises(Exception) as err:
        buffers(4, rotate="ring")
    assert "cp_rotate_method" in str(err.value)
