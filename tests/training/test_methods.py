"""The training methods' memory levers: fused losses, Liger's layer kernels, torch.compile, activation
offloading and sequence packing, and the fit search pulling them. Expected values are hand arithmetic
on llama-3.1-8b's published dimensions (hidden 4096, 32 layers, vocabulary 128,256, 8 KV heads of 128)."""

import json

from pycore import api
from pycore.data.catalog import catalog_model
from pycore.estimate import estimate
from pycore.training.kernels import liger_chunk_rows
from pycore.training.workload import Hardware, Precision, Workload

M = catalog_model("llama-3.1-8b")
H100 = Hardware("H100", 80 * 2 ** 30)
B, S = 4, 2048
T = B * S


def _run(**kw):
    w = Workload(**{"mode": "lora", "batch_size": B, "seq_len": S, **kw})
    return estimate(M, w, Precision(weights="bf16"), H100)


def _part(e, phase_moment: str, name: str) -> int:
    snap = next(s for s in e.snapshots if s.moment == phase_moment)
    return sum(items.get(name, 0) for _, items in snap.parts)


LOSS = "loss computation (fp32 copy of the logits)"


def test_liger_chunks_rows_as_its_source_does():
    # inc_factor = ceil(128256 / 4096) = 32; chunk = next_pow2(ceil(8192 / 32)) = 256
    assert liger_chunk_rows(8192, 128256, 4096) == 256
    # a short run fits in one chunk: ceil(100 / 32) = 4 -> 4 rows
    assert liger_chunk_rows(100, 128256, 4096) == 4


def test_liger_flce_keeps_no_logits_and_the_hidden_gradient_instead():
    default, liger = _run(), _run(loss_kernel="liger-flce")
    assert _part(default, LOSS, "logits") == 2 * T * 128256                 # bf16 logits, 2,101,346,304 bytes
    assert _part(liger, LOSS, "logits") == 0
    # grad_input (bf16, T x 4096) and the fp32 loss per token: 67,108,864 + 32,768
    assert _part(liger, LOSS, "Liger FLCE: gradients computed in forward (hidden, output layer)") == \
        2 * T * 4096 + 4 * T
    assert _part(liger, LOSS, "Liger FLCE: one chunk of logits") == 2 * 256 * 128256
    assert liger.peak_allocated_bytes < default.peak_allocated_bytes - 4 * 2 ** 30


def test_cut_cross_entropy_keeps_only_the_log_sum_exp():
    cce = _run(loss_kernel="cut-cross-entropy")
    assert _part(cce, LOSS, "CCE: log-sum-exp per token") == 4 * T
    assert _part(cce, LOSS, "logits") == 0


def test_torchtune_chunked_loss_upcasts_one_chunk_at_a_time():
    tt = _run(loss_kernel="torchtune-chunked")
    # fp32 copy of T x V split in 8: 4 x 8192 x 128256 / 8 = 525,336,576 bytes
    assert _part(tt, LOSS, "one chunk's fp32 upcast") == 4 * T * 128256 // 8
    assert _part(tt, LOSS, "logits") == 2 * T * 128256          # the chunks' logits are all kept


def test_liger_layer_kernels_drop_the_fp32_norm_inputs_and_swiglus_product():
    default, liger = _run(), _run(liger_kernels=True)
    saved = lambda e: dict(next(s for s in e.snapshots if s.moment == "last layer's forward").parts)["activations"]
    # RMSNorm keeps X in bf16 (2 bytes) instead of fp32: input norm of 32 layers, 32 x T x 4096 x 2
    assert saved(liger)["input norm input (own dtype)"] == 32 * T * 4096 * 2
    assert "input norm fp32 input" not in saved(liger)
    # SwiGLU recomputes silu(gate) * up: no activation output (32 x T x 14336 x 2 = 7.5 GB less)
    assert "MLP activation output" in saved(default) and "MLP activation output" not in saved(liger)


def test_torch_compile_is_said_to_be_unverified():
    e = _run(torch_compile=True)
    assert any("unverified" in w for w in e.warnings)
    assert e.peak_allocated_bytes < _run().peak_allocated_bytes


def test_offloading_checkpointed_inputs_moves_them_to_the_host():
    ckpt = _run(gradient_checkpointing=True)
    off = _run(gradient_checkpointing=True, activation_offload="unsloth")
    # 32 layer inputs of T x 4096 in bf16 = 2 GiB on the host; the GPU keeps the one at work
    assert any("2.00 GiB of activations in pinned host memory" in w for w in off.warnings)
    assert ckpt.peak_allocated_bytes - off.peak_allocated_bytes >= 30 * T * 4096 * 2


def test_offloading_needs_checkpointing_for_unsloth_and_deepspeed():
    out = json.loads(api.estimate(json.dumps({"model": "llama-3.1-8b", "gpu": "h100-sxm-80gb", "workload": {
        "mode": "lora", "activation_offload": "unsloth"}})))
    assert out["errors"][0]["field"] == "workload.activation_offload"


def test_packing_with_sdpa_keeps_a_block_mask_and_loses_flash():
    packed = _run(packing="sdpa-mask")
    assert packed.context.kernel == "efficient"
    assert _part(packed, LOSS, "packed-sequence attention mask") == B * S * S       # bool b x s x s
    out = json.loads(api.estimate(json.dumps({"model": "llama-3.1-8b", "gpu": "h100-sxm-80gb", "workload": {
        "mode": "lora", "packing": "flash-varlen"}})))
    assert out["errors"][0]["field"] == "workload.packing"
    varlen = _run(packing="flash-varlen", attention="flash")
    assert varlen.peak_allocated_bytes == _run(attention="flash").peak_allocated_bytes


def test_fit_search_offers_the_fused_loss_and_a_smaller_adapter():
    req = {"model": "llama-3.1-8b", "gpu": "a10-24gb", "fit": {"limit": 8},
           "workload": {"mode": "peft", "batch_size": 1, "seq_len": 4096, "gradient_checkpointing": True,
                        "peft_config": {"peft_type": "LOHA", "r": 32, "target_modules": "all-linear"}}}
    out = json.loads(api.estimate(json.dumps(req)))
    assert out["status"] == "ok", out
    levers = {c["lever"] for plan in out["result"]["fit"]["plans"] for c in plan["changes"]}
    considered = out["result"]["fit"]["levers"]
    assert {"loss", "activation offload", "adapter size"} <= set(considered), considered
    assert levers, out["result"]["fit"]
