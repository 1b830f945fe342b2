"""What is kept of the attention output, the output projection's input (issue 22), worked out by hand.

The flash and memory-efficient kernels keep their output; eager attention and SDPA's math path do not, so the
output is kept only by the output projection when that trains, or by its adapter (as itself in the adapters'
dtype, else as a cast). Also the rules fixed beside it (issue 22): GPT-2's 16-bit eager softmax, GPT-NeoX's
v under eager attention, Qwen3-Next's output gate and gated delta rule, DeepSeek's MLA under eager attention.
Checked against autograd in tests/integration/test_attention_output_saved.py.
"""

import pytest

from pycore.estimate import estimate
from pycore.request.parse import parse_request

# Llama 3.1 8B: 32 layers, hidden 4096 = 32 query heads x 128, so o_proj reads 4096 values per token.
LAYERS, WIDTH = 32, 4096
TOKENS = 2 * 1024


def _activations(workload: dict, precision: dict | None = None, model: str = "llama-3.1-8b"):
    """The activations at the end of forward (all layers' saved tensors), and the estimate."""
    r = parse_request({"model": model, "workload": {"batch_size": 2, "seq_len": 1024, **workload},
                       "precision": precision or {"weights": "bf16"}})
    e = estimate(r.model, r.workload, r.precision, r.hardware, r.framework, r.parallelism)
    last = next(s for s in e.snapshots if s.moment == "last layer's forward")
    return dict(last.parts)["activations"], e


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_lora_on_q_and_v_keeps_the_attention_output_only_where_the_kernel_keeps_it(attention):
    acts, _ = _activations({"mode": "lora", "attention": attention, "lora": {"targets": ["q_proj", "v_proj"]}})
    if attention == "eager":
        # o_proj is frozen and not adapted: F.linear keeps its input only for the weight's gradient
        assert "attention output" not in acts
    else:
        # bf16 without a mask: the flash kernel, which keeps its output, 32 x 2,048 x 4,096 x 2 B
        assert acts["attention output"] == LAYERS * TOKENS * WIDTH * 2 == 536_870_912
    # q_proj and v_proj keep fp32 casts of the input norm's output: 2 x 32 x 2,048 x 4,096 x 4 B
    assert acts["LoRA inputs in the adapters' dtype"] == 2 * LAYERS * TOKENS * WIDTH * 4 == 2_147_483_648


def test_an_adapted_o_proj_under_eager_attention_keeps_only_its_fp32_cast():
    # q, k, v read the norm's output (3 casts), o_proj the attention output (1 cast), all 4096 wide, fp32:
    # 4 x 32 x 2,048 x 4,096 x 4 B = 4,294,967,296 B; the bf16 attention output itself is not kept
    acts, _ = _activations({"mode": "lora", "attention": "eager",
                         "lora": {"targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}})
    assert acts["LoRA inputs in the adapters' dtype"] == 4 * LAYERS * TOKENS * WIDTH * 4 == 4_294_967_296
    assert "attention output" not in acts


def test_an_adapted_o_proj_in_the_adapters_dtype_keeps_the_attention_output_itself():
    # fp32 weights and fp32 adapters: lora_A keeps x itself, 32 x 2,048 x 4,096 x 4 B, and no cast
    acts, _ = _activations({"mode": "lora", "attention": "eager", "lora": {"targets": ["o_proj"]}},
                        {"weights": "fp32"})
    assert acts["attention output"] == LAYERS * TOKENS * WIDTH * 4 == 1_073_741_824
    assert "LoRA inputs in the adapters' dtype" not in acts


def test_full_training_keeps_the_attention_output_for_o_projs_weight_gradient():
    acts, _ = _activations({"mode": "full", "attention": "eager"})
    assert acts["attention output"] == LAYERS * TOKENS * WIDTH * 2 == 536_870_912


def test_gpt_neox_under_flash_keeps_the_kernels_output_and_a_trained_dense_input_apart():
    # Pythia-1B: 16 layers, hidden 2048; the partial rotary's torch.cat leaves q contiguous per head, so the
    # flash kernel's output is copied before dense: full training keeps both, 2 x 16 x 2,048 x 2,048 x 2 B
    acts, e = _activations({"mode": "full"}, model="pythia-1b")
    assert e.context.kernel == "flash"
    assert acts["attention output"] == 16 * TOKENS * 2048 * 2 == 134_217_728
    assert acts["attention output (the output projection's input)"] == 134_217_728


def test_an_encoders_adapted_out_proj_under_eager_attention_keeps_only_its_fp32_cast():
    # Gemma 3's SigLIP (27 layers, D = 1152), one 896 x 896 image = 4096 patches, bf16, eager, LoRA on
    # out_proj only: lora_A keeps x.to(fp32), 27 x 4096 x 1152 x 4 B = 509,607,936 B; the bf16 output
    # that the output projection reads is not kept (its base weight is frozen)
    from pycore.data.catalog import model_entries
    from pycore.model.hfconfig import read_hf_config
    from pycore.training.vision import encoder_saved
    from pycore.training.workload import Framework, Precision, Workload
    m = read_hf_config(model_entries()["gemma-3-4b-it"]["hf_config"])
    w = Workload(mode="lora", images_per_sample=1, attention="eager", lora_targets=["out_proj"])
    _, kept = encoder_saved(m, w, Precision(), Framework(), False)
    assert kept["encoder LoRA inputs in the adapters' dtype"] == 27 * 4096 * 1152 * 4 == 509_607_936
    assert not any("output projection's input" in k for k in kept)


def test_gpt2_in_bf16_keeps_a_bf16_softmax_output_under_eager_attention():
    # GPT-2 small (12 layers, 12 heads), bf16 weights, no autocast, batch 2 x 1024, full training, eager:
    # softmax without dtype=float32 keeps a bf16 b x heads x s x s output: 12 x 2 x 12 x 1024 x 1024 x 2 B
    acts, _ = _activations({"mode": "full", "attention": "eager"}, model="gpt2")
    assert acts["attention scores: softmax output"] == 12 * 2 * 12 * 1024 * 1024 * 2 == 603_979_776
    assert "attention scores: softmax output (fp32)" not in acts
    # under fp16 autocast softmax runs in fp32 (autocast's fp32 list): 12 x 2 x 12 x 1024 x 1024 x 4 B
    acts, _ = _activations({"mode": "full", "attention": "eager"}, {"weights": "fp32", "autocast": "fp16"}, "gpt2")
    assert acts["attention scores: softmax output (fp32)"] == 1_207_959_552


def test_gpt_neox_under_eager_attention_keeps_a_contiguous_v_not_the_fused_projection():
    # Pythia-1B (16 layers, hidden 2048, 8 heads of 256), bf16, LoRA on query_key_value, eager, 2 x 1024:
    # q and k after the partial rotary (new tensors) and a contiguous copy of v, 2,048 wide each:
    # 16 x 2,048 tokens x 2 x 2,048 x 2 B for q and k, 16 x 2,048 x 2,048 x 2 B for v
    acts, _ = _activations({"mode": "lora", "attention": "eager"}, model="pythia-1b")
    assert acts["attention q, k after rotary"] == 16 * TOKENS * 2 * 2048 * 2 == 268_435_456
    assert acts["attention v (contiguous copy of the fused projection's slice)"] == 16 * TOKENS * 2048 * 2
    assert not any("fused q, k, v" in k for k in acts)


def test_phi3_under_flash_with_a_trained_o_proj_keeps_the_kernels_output_and_its_contiguous_copy():
    # Phi-3 medium (40 layers, 40 heads of 128 = 5120), full training in bf16, 2 x 1024 tokens, flash: the
    # rotary's torch.cat lays q out per head, the kernel's output follows, and o_proj reads (and keeps) a
    # contiguous copy: 40 x 2,048 x 5,120 x 2 B = 838,860,800 B each
    acts, e = _activations({"mode": "full"}, model="phi-3-medium-4k")
    assert e.context.kernel == "flash"
    assert acts["attention output"] == 40 * TOKENS * 5120 * 2 == 838_860_800
    assert acts["attention output (the output projection's input)"] == 838_860_800
    # with a frozen, unadapted o_proj (LoRA on qkv_proj) only the kernel's output stays
    acts, _ = _activations({"mode": "lora", "lora": {"targets": ["qkv_proj"]}}, model="phi-3-medium-4k")
    assert acts["attention output"] == 838_860_800
    assert "attention output (the output projection's input)" not in acts


def test_qwen3_next_linear_attention_keeps_out_projs_input_only_when_out_proj_trains():
    # Qwen3-Next 80B-A3B: 48 layers, 36 of them gated delta rule (3 of every 4), whose out_proj reads
    # 32 value heads x 128 = 4096 per token. LoRA on q_proj and v_proj leaves out_proj frozen: nothing keeps
    # its input. Full training keeps it: 36 x 2,048 tokens x 4,096 x 2 B = 603,979,776 B
    lora, _ = _activations({"mode": "lora", "lora": {"targets": ["q_proj", "v_proj"]}},
                           model="qwen3-next-80b-a3b-instruct")
    assert "linear attention out_proj input" not in lora
    full, _ = _activations({"mode": "full"}, model="qwen3-next-80b-a3b-instruct")
    assert full["linear attention out_proj input"] == 36 * TOKENS * 4096 * 2 == 603_979_776


def test_qwen3_next_gated_attention_keeps_both_factors_of_the_gate_and_not_a_frozen_o_projs_input():
    # Qwen3-Next 80B-A3B: 12 of 48 layers are full attention, 16 heads of 256 = 4096 wide, the gate being the
    # second half of q_proj's output. bf16, 2 x 1024 tokens, flash; its partial rotary joins q with torch.cat,
    # so the kernel's output is copied to b x s x 4096 before attn_output * sigmoid(gate). Kept per layer:
    # the kernel's output, the copy and the sigmoid (the product's factors), each 12 x 2,048 x 4,096 x 2 B =
    # 201,326,592 B; the product is o_proj's input, frozen under LoRA on q_proj and v_proj: not kept.
    acts, e = _activations({"mode": "lora", "lora": {"targets": ["q_proj", "v_proj"]}},
                           model="qwen3-next-80b-a3b-instruct")
    assert e.context.kernel == "flash"
    each = 12 * TOKENS * 4096 * 2
    assert acts["attention output"] == acts["attention output (contiguous copy)"] == each == 201_326_592
    assert acts["attention output gate's sigmoid"] == each
    assert "attention output times the gate" not in acts
    # q_norm and k_norm keep an fp32 rsqrt per head and token: 12 x 2,048 x (16 + 2) x 4 B
    assert acts["attention q_norm statistics"] + acts["attention k_norm statistics"] == 12 * TOKENS * 18 * 4
    # full training: o_proj keeps the product too
    full, _ = _activations({"mode": "full"}, model="qwen3-next-80b-a3b-instruct")
    assert full["attention output times the gate"] == each


def test_deepseek_mla_under_eager_attention_keeps_its_scores_norms_and_casts_but_not_a_frozen_o_projs_input():
    # DeepSeek-V2-Lite: 27 layers, 16 heads, kv_lora_rank 512, no q compression; bf16, eager, 1 x 1024 tokens,
    # LoRA on q_proj and kv_b_proj.
    acts, _ = _activations({"mode": "lora", "attention": "eager", "batch_size": 1,
                            "lora": {"targets": ["q_proj", "kv_b_proj"]}}, model="deepseek-v2-lite")
    # the fp32 softmax output, 27 x 16 heads x 1024 x 1024 x 4 B
    assert acts["attention scores: softmax output (fp32)"] == 27 * 16 * 1024 * 1024 * 4 == 1_811_939_328
    # kv_a_layernorm: fp32 input 27 x 1024 x 512 x 4 B and an fp32 rsqrt per token, 27 x 1024 x 4 B
    assert acts["attention kv_a_layernorm fp32 input"] == 27 * 1024 * 512 * 4 == 56_623_104
    assert acts["attention kv_a_layernorm statistics"] == 27 * 1024 * 4
    # fp32 casts: q_proj's of the 2048-wide norm output and kv_b_proj's of the 512-wide latent
    assert acts["LoRA inputs in the adapters' dtype"] == 27 * 1024 * (2048 + 512) * 4 == 283_115_520
    assert "attention output" not in acts and "attention log-sum-exp" not in acts
