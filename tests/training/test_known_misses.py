"""The named misses of issue 22, each from its mechanism, tested on a configuration of the same kind that
shared/calibration does not hold. Expected values are arithmetic done by hand from the tensors the
libraries keep (the mechanism), shown in each test."""

from pycore.estimate import estimate
from pycore.request.parse import parse_request


def _estimate(req: dict):
    r = parse_request(req)
    return estimate(r.model, r.workload, r.precision, r.hardware, r.framework, r.parallelism)


def test_bert_masked_lm_under_autocast_holds_the_16bit_log_softmax_and_the_fp32_copy_nll_loss_saves():
    # A configuration not in shared/calibration: BERT-large, fp16 autocast, batch 8 x 256.
    # cross_entropy_loss runs log_softmax in the logits' dtype and nll_loss (autocast fp32 list) saves an fp32
    # copy of it: with N = 8 * 256 * 30522 = 62,509,056 logits, the loss keeps 2N (16-bit logits, held by the
    # output) + 2N (log-softmax output) + 4N (fp32 copy) = 8N, and its backward adds nll_loss's fp32 gradient, 4N.
    e = _estimate({"model": "bert-large", "workload": {"mode": "full", "batch_size": 8, "seq_len": 256},
                   "precision": {"weights": "fp32", "autocast": "fp16"}})
    n = 8 * 256 * 30522
    loss_bwd = next(s for s in e.snapshots if s.moment.startswith("loss backward"))
    parts = dict(loss_bwd.parts)
    assert sum(parts["logits and loss"].values()) == 8 * n
    assert parts["temporaries"] == {"loss gradients": 4 * n}


def test_phi3_fused_qkv_keeps_rotary_q_k_and_a_contiguous_v_not_the_fused_projection():
    # Phi-3 medium (40 layers, 40 query heads, 10 KV heads of 128): LoRA, batch 2 x 1024, no checkpointing.
    # Kept per layer: rotary q (40 x 128) and k (10 x 128) and a contiguous v (10 x 128), in bf16, over
    # 2,048 tokens; qkv_proj's fused output (q + k + v wide) is not kept.
    e = _estimate({"model": "phi-3-medium-4k", "workload": {"mode": "lora", "batch_size": 2, "seq_len": 1024}})
    acts = dict(e.peak.parts)["activations"]
    tokens, layers = 2 * 1024, 40
    assert acts["attention q, k after rotary"] == layers * tokens * (40 * 128 + 10 * 128) * 2
    assert acts["attention v (contiguous copy of the fused projection's slice)"] == layers * tokens * 10 * 128 * 2
    assert not any("fused q, k, v" in k for k in acts)


def test_gemma2_sdpa_prefill_past_the_window_keeps_the_boolean_mask_and_converts_it_per_layer():
    # Gemma 2 9B (16 query heads, 8 KV heads of 256), generate at batch 4 x 6,000 > the 4,096 window, SDPA.
    # The boolean window mask b x 1 x s x s: 4 x 6000 x 6000 x 1 B = 144,000,000 B, kept for the whole
    # forward; in a sliding layer SDPA's additive bf16 copy, 24,000 x 6,000 x 2 B = 288,000,000 B, and K/V
    # repeated to 16 heads, K and V x 24,000 tokens x (16 - 8) x 256 extra elements x 2 B = 196,608,000 B.
    from pycore.serving.hf import sdpa_window_mask_working
    e = _estimate({"model": "gemma-2-9b", "workload": {"mode": "inference", "batch_size": 4, "seq_len": 6000,
                                                       "new_tokens": 8}})
    assert e.context.kernel == "efficient"
    prefill = dict(e.snapshots[0].parts)["temporaries"]
    assert prefill["sliding-window attention mask (bool, b x s x s)"] == 144_000_000
    work = sdpa_window_mask_working(e.context, e.model, 4 * 6000, 6000)
    assert work == {"SDPA's additive copy of the window mask (one layer)": 288_000_000,
                    "K/V repeated to all heads (repeat_kv)": 196_608_000}
    # within the window the causal mask is skipped: no mask at all
    short = _estimate({"model": "gemma-2-9b", "workload": {"mode": "inference", "batch_size": 4, "seq_len": 4000,
                                                           "new_tokens": 8}})
    assert not any("mask" in k for k in dict(short.snapshots[0].parts)["temporaries"])


def test_gemma2_runs_eager_attention_from_transformers_5_21():
    # transformers 5.21 declares Gemma2PreTrainedModel._supports_sdpa = False (soft-capping; 5.20 and 5.17:
    # True), so the default attention is eager: Gemma 2 2B (8 heads) at batch 1 x 2,048 keeps its
    # b x heads x q x k scores, 1 x 8 x 2048 x 2048 x 2 B = 67,108,864 B, in the prompt pass.
    def prefill(tf):
        e = _estimate({"model": "gemma-2-2b", "workload": {"mode": "inference", "batch_size": 1, "seq_len": 2048,
                                                           "new_tokens": 4}, "framework": {"transformers": tf}})
        return e.context.kernel, dict(e.snapshots[0].parts)["temporaries"]
    kernel, temps = prefill("5.21")
    assert kernel == "eager" and temps["attention scores (b x heads x q x k)"] == 67_108_864
    kernel, temps = prefill("5.20")
    assert kernel != "eager" and not any("scores" in k for k in temps)


def test_gemma2_prefill_past_the_window_keeps_the_whole_prompts_keys_and_values_in_sliding_layers():
    # A configuration not measured: Gemma 2 9B (42 layers, 21 of them sliding with a 4,096 window; 8 KV heads
    # of 256), generate at batch 2 x 10,000 with 16 new tokens. DynamicSlidingWindowLayer keeps a view of the
    # last 4,095 tokens, so after the prompt pass every layer still holds the whole prompt's K and V:
    # 42 layers x 2 x 10,000 tokens x (K + V) 2 x 8 x 256 x 2 B = 6,881,280,000 B (the window alone would be
    # 21 x 20,000 x 8,192 + 21 x 2 x 4,096 x 8,192 = 4,849,664,000 B, 2,031,616,000 B less).
    e = _estimate({"model": "gemma-2-9b", "workload": {"mode": "inference", "batch_size": 2, "seq_len": 10000,
                                                       "new_tokens": 16}})
    prefill = e.snapshots[0]
    assert prefill.phase == "prefill"
    assert dict(prefill.parts)["KV cache"] == {"KV cache": 42 * 20_000 * 8_192}
    # the first decode step's torch.cat replaces the view with a window-sized copy: the last step holds
    # 21 full layers x 2 x 10,015 tokens and 21 sliding layers x 2 x 4,096 tokens, x 8,192 B each
    last = e.snapshots[-1]
    assert dict(last.parts)["KV cache"] == {"KV cache": 21 * 2 * 10_015 * 8_192 + 21 * 2 * 4_096 * 8_192}
