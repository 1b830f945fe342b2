"""vLLM's profile-run terms by version (issue 20): the sampler's dummy run before and after the Triton
top-k/top-p kernel, non-torch memory over NVSwitch and PCIe, and the fused-MoE workspaces that the
WorkspaceManager keeps. Expected values are worked by hand from the source lines cited in
pycore/serving/vllm_profile.py."""

from pycore.api import estimate_dict
from pycore.serving.vllm_profile import device_traits, non_torch_parts, sampler_parts
from pycore.units import GiB


def test_the_sort_path_holds_28_bytes_a_logit_before_0_17():
    # 256 rows x 151,936 logits x (2 bf16 + 4 fp32 + 4 values + 8 indices + 1 + 1 masks + 4 softmax + 4) bytes
    parts = sampler_parts((0, 16, 0), 256, 151936, 2, 132)
    assert sum(parts.values()) == 256 * 151936 * 28 == 1_089_077_248


def test_the_triton_path_holds_14_bytes_a_logit_and_a_per_sm_scratch_from_0_17():
    # 256 rows: 256 x 151,936 x (2 + 4 + 4 + 4) = 544,538,624; scratch min(next_pow2(min(132, 256)), 132)
    # = 132 rows of 151,936 fp32 = 80,222,208
    parts = sampler_parts((0, 17, 0), 256, 151936, 2, 132)
    assert sorted(parts.values()) == [80_222_208, 544_538_624]
    # fewer than 8 rows still sort (topk_topp_sampler.py:251)
    assert sum(sampler_parts((0, 19, 0), 4, 151936, 2, 132).values()) == 4 * 151936 * 28


def test_the_scratch_is_capped_by_the_sm_count():
    # an L4 (58 SMs) with 1024 rows: min(next_pow2(58) = 64, 58) = 58 rows of 262,144 fp32
    parts = sampler_parts((0, 19, 0), 1024, 262144, 2, device_traits("NVIDIA L4")[0])
    assert min(parts.values()) == 58 * 262144 * 4


def test_non_torch_grows_by_the_nvls_buffers_at_tp2_on_h100_but_not_over_pcie():
    h100 = sum(non_torch_parts((0, 19, 0), 2, 1, "NVIDIA H100 80GB HBM3 (SXM)").values())
    l40s = sum(non_torch_parts((0, 19, 0), 2, 1, "NVIDIA L40S").values())
    one = sum(non_torch_parts((0, 19, 0), 1, 1, "NVIDIA H100 80GB HBM3 (SXM)").values())
    # PR #10511: non_torch_memory 1.79 GiB at TP1 and 3.58 GiB at TP2 on H100
    assert abs((h100 - one) / GiB - (3.58 - 1.79)) < 0.01
    assert l40s - one < 0.05 * GiB
    # pipeline parallel only: send/recv, no NVLS all-reduce
    assert sum(non_torch_parts((0, 19, 0), 1, 2, "NVIDIA H100 80GB HBM3 (SXM)").values()) - one < 0.05 * GiB


def _serve(version, tp=1, model="qwen2.5-7b", gpu="h100-sxm-80gb"):
    r = estimate_dict({"model": model, "gpu": gpu, "workload": {
        "mode": "serve", "engine": "vllm", "version": version, "tensor_parallel_size": tp, "max_model_len": 8192}})
    assert r["status"] == "ok", r
    return r["result"]


def test_the_dense_profile_peak_falls_with_the_triton_sampler():
    before, after = _serve("0.16.0"), _serve("0.17.0")
    assert after["report"]["activation_bytes"] < before["report"]["activation_bytes"]
    assert after["kv_cache_tokens"] > before["kv_cache_tokens"]


def test_moe_workspaces_add_to_the_sampler_from_0_13():
    old, new = _serve("0.12.0", model="qwen3-30b-a3b"), _serve("0.13.0", model="qwen3-30b-a3b")
    assert new["report"]["activation_bytes"] >= old["report"]["activation_bytes"]


def test_the_answer_names_its_non_torch_parts():
    r = _serve("0.19.0", tp=2)
    assert r["report"]["non_torch_bytes"] > 1.7 * GiB


def test_llama_cpp_op_offload_puts_the_output_copy_on_the_first_device():
    # Llama-3.1-8B Q4_K_M over two GPUs with -ngl 32 (output layer in host memory): the output matmul is
    # offloaded to the first backend (ggml-backend.cpp "1.off"), which takes the logits and a copy of
    # output.weight (Q6_K: 128,256 x 4,096 weights x 210 bytes / 256 = 430,940,160 bytes = 410.98 MiB)
    r = estimate_dict({"model": "llama-3.1-8b", "gpu": "rtx-4090-24gb", "workload": {
        "mode": "serve", "engine": "llamacpp", "devices": 2, "n_gpu_layers": 32, "n_ctx": 8192}})["result"]
    compute = r["report"]["compute_buffer_mib"]
    assert compute["CUDA0"] > 410.98 > compute["CUDA1"]
