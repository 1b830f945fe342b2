"""Full training of a model with tied embeddings: at the embedding's backward the shared weight's two
gradients are added out of place (checked against torch in tests/integration/test_tied_embedding_grad.py),
so two vocab x hidden gradients more exist for a moment. It sets the peak when the optimizer step adds
nothing (SGD, fused AdamW) and the batch is small. Bytes worked by hand."""

from pycore.api import estimate_dict


def _result(model, optimizer, mode="full"):
    resp = estimate_dict({"model": model, "gpu": {"memory_gib": 80},
                          "workload": {"mode": mode, "optimizer": optimizer, "batch_size": 1, "seq_len": 128}})
    assert resp["status"] == "ok", resp
    return resp["result"]


def test_sgd_on_a_tied_model_peaks_at_the_embedding_backward():
    # Llama 3.2 1B, bf16: 1,235,814,400 parameters -> weights 2,471,628,800 B and gradients as much; the
    # embedding's gradient and the sum: 2 x 128,256 x 2,048 x 2 B = 1,050,673,152 B
    r = _result("llama-3.2-1b", "sgd")
    assert r["params"]["total"] == 1_235_814_400
    assert r["peak_allocated_bytes"] == 2 * 2_471_628_800 + 1_050_673_152
    assert r["peak_phase"] == "backward" and "embedding backward" in r["peak_moment"]


def test_an_untied_model_or_a_frozen_base_has_no_such_moment():
    # Llama 3.1 8B's output layer is its own weight: SGD's peak is weights + gradients at the step
    r = _result("llama-3.1-8b", "sgd")
    assert r["peak_phase"] == "optimizer step"
    # LoRA trains adapters only: the embedding gets no gradient
    lora = _result("llama-3.2-1b", "adamw", mode="lora")
    assert "embedding backward" not in str(lora["breakdown"])


def test_foreach_adamw_s_step_is_larger_than_the_moment():
    # AdamW (foreach): the step holds states 2 x 2,471,628,800 and a temporary of 2,471,628,800 B besides
    # weights and gradients, more than the 1,050,673,152 B of the embedding's moment
    r = _result("llama-3.2-1b", "adamw")
    assert r["peak_phase"] == "optimizer step"
    assert r["peak_allocated_bytes"] == 5 * 2_471_628_800
