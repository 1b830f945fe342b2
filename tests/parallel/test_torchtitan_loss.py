"""torchtitan's loss as a version rule (recipe fsdp2): logits freed before the loss backward (PR #391),
the compiled loss from 0.1.0 (PR #1033), and loss parallelism's tensors under TP. Byte counts by
hand for Llama-3.2-1B at 2 x 2048 tokens: T = 4096, V = 128,256."""

import pytest

from pycore.estimate import estimate as typed
from pycore.request.parse import parse_request
from pycore.versions import holds

T, V = 2 * 2048, 128_256


def moments(options=None, **par):
    req = parse_request({"model": "llama-3.2-1b", "workload": {"batch_size": 2, "seq_len": 2048},
                         "precision": {"weights": "fp32", "autocast": "bf16"}, "gpu": {"memory_gib": 1000},
                         "parallelism": {"recipe": "fsdp2", **par, "options": options or {}}})
    e = typed(req.model, req.workload, req.precision, req.hardware, req.framework, req.parallelism)
    return {s.moment: dict(s.parts) for s in e.snapshots}


def test_the_rules_hold_for_the_versions_their_prs_shipped_in():
    assert holds("torchtitan-frees-logits", (0, 0, 2))
    assert not holds("torchtitan-compiles-loss", (0, 0, 2)) and holds("torchtitan-compiles-loss", (0, 1, 0))


def test_eager_loss_backward_holds_no_logits():
    m = moments()
    fwd, bwd = m["loss computation (fp32 copy of the logits)"], m["loss backward (log-softmax gradients)"]
    assert fwd["logits and loss"]["logits"] == 2 * T * V                # bf16, until `del pred`
    assert "logits" not in bwd["logits and loss"]
    assert bwd["logits and loss"]["loss log-softmax"] == 4 * T * V      # fp32, saved by log_softmax
    assert bwd["temporaries"]["loss gradients"] == 2 * 4 * T * V        # nll_loss and log_softmax gradients


def test_the_compiled_loss_keeps_bf16_logits_and_a_log_sum_exp_from_0_1_0():
    new = moments({"compile": True, "torchtitan_version": "0.2.2"})
    bwd = new["loss backward (log-softmax gradients)"]
    assert bwd["logits and loss"] == {"logits (saved by the compiled loss)": 2 * T * V, "log-sum-exp (fp32)": 4 * T}
    assert bwd["temporaries"] == {"logits gradient (bf16, compiled loss)": 2 * T * V}
    old = moments({"compile": True, "torchtitan_version": "0.0.2"})
    assert old == moments({"torchtitan_version": "0.0.2"})             # 0.0.2 compiled the blocks only


def test_loss_parallel_adds_one_loss_sized_fp32_tensor_under_tp():
    bwd = moments(tensor_parallel=2)["loss backward (log-softmax gradients)"]["temporaries"]
    assert bwd["zeros and exp of the log-probabilities (loss parallel backward, fp32)"] == 4 * T * V // 2


def test_the_torchtitan_version_is_checked():
    with pytest.raises(Exception) as err:
        moments({"torchtitan_version": "new"})
    assert "torchtitan_version" in str(err.value)
