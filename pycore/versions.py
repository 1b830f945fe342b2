"""Software versions, and every behaviour that changed between them, as one table of rules.

A rule holds for a library's versions in [since, until): ``holds("legacy-tuple-cache", tf)``. The
formula that the rule changes asks for it by name, next to where it applies; the Method page lists the
table (docs/method.md, kept current by tests/test_docs.py). Versions are (major, minor, patch) tuples;
llama.cpp's are build numbers, written (build,).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InputError

_VERSION = re.compile(r"v?(\d{1,4})\.(\d{1,4})(?:\.(\d{1,4}))?")


def version_tuple(text: str, field: str = "workload.version", what: str = "a version",
                  example: str = "0.11.0") -> tuple[int, int, int]:
    """(major, minor, patch) of a version string such as 0.10.2, v0.5.3 or 4.46.3.dev0."""
    m = _VERSION.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise InputError(field, f"{what} is written like {example}, got {str(text)[:40]!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


@dataclass(frozen=True)
class Rule:
    name: str
    library: str
    since: tuple | None        # first version it holds for (None: every earlier one)
    until: tuple | None        # first version it no longer holds for (None: still holds)
    effect: str
    source: str

    def holds(self, version: tuple) -> bool:
        return (self.since is None or version >= self.since) and (self.until is None or version < self.until)

    def range_text(self) -> str:
        show = (lambda v: f"b{v[0]}") if self.library == "llama.cpp" else (lambda v: ".".join(map(str, v)))
        if self.since and self.until:
            return f"{show(self.since)} to before {show(self.until)}"
        if self.since:
            return f"{show(self.since)} and later"
        return f"before {show(self.until)}"


RULES = (
    # ---- PyTorch ----
    Rule("zero-grad-keeps-gradients", "torch", None, (2, 0, 0),
         "zero_grad() zeroes gradients instead of freeing them (set_to_none defaulted to False): from the second "
         "step they stay allocated through forward", "torch PR #92731; torch/optim/optimizer.py:1024"),
    Rule("cuda-lazy-module-loading", "torch", (1, 13, 0), None,
         "CUDA_MODULE_LOADING=LAZY is set when unset: the CUDA context holds only the kernels used (820 MiB "
         "measured on H100 with 2.11) instead of every kernel (1,343 MB in transformers' memory anatomy guide)",
         "torch PR #86509; transformers docs model_memory_anatomy.md"),
    Rule("adafactor-single-tensor-default", "torch", (2, 5, 0), None,
         "torch.optim.Adafactor runs its per-parameter loop unless foreach=True: the step's temporary is the "
         "largest matrix's variance estimate, not one for every matrix", "torch/optim/_adafactor.py:246-252, 636"),
    Rule("compile-recomputes-pointwise", "torch", (2, 0, 0), None,
         "torch.compile trains through AOTAutograd's min-cut partitioner: pointwise chains (the norms' fp32 casts, "
         "SiLU times up, rotary) are recomputed in backward rather than saved; modelled as Liger's RMSNorm, SwiGLU "
         "and RoPE keep: exact for a frozen-weight Llama layer on the CPU (tests/integration/test_compile_saved.py), "
         "unverified on a GPU", "torch/_functorch/partitioners.py min_cut_rematerialization_partition"),
    # ---- transformers ----
    Rule("hf-sdpa-attention", "transformers", (4, 36, 0), None,
         "models run torch's scaled_dot_product_attention by default when torch is 2.1.1 or later; before, "
         "every model computes eager attention (b x heads x s x s scores and probabilities kept for backward)",
         "transformers 4.36.0 modeling_utils.py:1258 _autoset_attn_implementation and 1456 "
         "_check_and_enable_sdpa (LlamaSdpaAttention first in 4.36.0; 4.35.0 has none); import_utils.py "
         "is_torch_sdpa_available: torch >= 2.1.1"),
    Rule("hf-sdpa-bert", "transformers", (4, 41, 0), None,
         "BERT runs SDPA (BertSdpaSelfAttention); eager before",
         "transformers 4.41.0 models/bert/modeling_bert.py:469, 829 (absent in 4.40.0)"),
    Rule("hf-sdpa-gpt2-neox", "transformers", (4, 42, 0), None,
         "GPT-2 and GPT-NeoX run SDPA (GPT2SdpaAttention, GPTNeoX's sdpa path); eager before",
         "transformers 4.42.0 models/gpt2/modeling_gpt2.py, models/gpt_neox/modeling_gpt_neox.py (absent in 4.41.0)"),
    Rule("legacy-tuple-cache", "transformers", None, (4, 42, 0),
         "generate passes the KV cache as tuples: a decode step holds the previous step's cache beside the new one, "
         "and the prompt's logits live through the first decode step",
         "modeling_llama.py:380-385@4.35.0; generation/utils.py:1775-1780@4.42.0"),
    Rule("prompt-logits-every-position", "transformers", None, (4, 45, 0),
         "the model computes logits for every prompt position and upcasts them with .float() (no logits_to_keep)",
         "modeling_llama.py:1208-1209@4.44.0; PR #31292"),
    Rule("mla-latent-cache", "transformers", (5, 15, 0), None,
         "DeepSeek-V2/V3 cache the compressed latent (kv_lora_rank + qk_rope_head_dim per token and layer) and "
         "expand it per layer at each step, instead of caching per-head keys and values",
         "modeling_deepseek_v2.py:357-404@5.17.0 vs :365-382@4.57.6"),
    Rule("gptq-marlin-default", "transformers", (5, 0, 0), None,
         "GPTQ and AWQ load through GPTQModel, which picks the Marlin kernel; before, GPTQ used AutoGPTQ's "
         "ExLlama v1 and AWQ AutoAWQ's GEMM kernel", "transformers 4.46 utils/quantization_config.py:691,705; "
         "gptqmodel marlin.py:58"),
    Rule("sliding-cache-keeps-prompt-at-prefill", "transformers", (4, 56, 0), None,
         "a sliding-window layer's DynamicSlidingWindowLayer keeps a view of the last window - 1 tokens of the "
         "prompt pass's keys and values, so the whole prompt's K/V stays allocated until the first decode step's "
         "torch.cat replaces it with a window-sized copy",
         "cache_utils.py DynamicSlidingWindowLayer.update (self.keys = full_key_states[:, :, -sliding_window + 1:, "
         ":]) @4.56.0 and @5.25.0; PR #40039 (before 4.56 DynamicCache kept every token of every layer)"),
    Rule("trainer-default-adamw-fused", "transformers", (4, 54, 0), None,
         "TrainingArguments.optim defaults to adamw_torch_fused (torch.optim.AdamW(fused=True): no foreach "
         "temporaries in the step) when torch is 2.8 or later; adamw_torch (foreach) before, or with an older torch",
         "transformers 4.54.0 training_args.py:1286-1291 (PR #37358; 4.53.0 has it commented out), "
         "5.25.0 training_args.py:806-811"),
    Rule("tied-head-loaded-twice", "transformers", (5, 0, 0), (5, 4, 0),
         "a model whose config ties the embeddings keeps lm_head as its own 16-bit vocab x hidden tensor when "
         "the checkpoint holds both embed_tokens.weight and lm_head.weight, as AutoAWQ's save_quantized "
         "wrote them before 0.2.9 (every state_dict tensor cloned): tie_weights logs 'both are present in the "
         "checkpoints, so we will NOT tie them'; from 5.4.0 it ties them when torch.equal holds",
         "transformers 5.0.0 modeling_utils.py:2516-2525 tie_weights (PR #42507); 5.4.0 (PR #44497), "
         "5.17.0 modeling_utils.py:2564; AutoAWQ 0.2.5 awq/models/base.py:257-266"),
    Rule("gemma2-eager-attention", "transformers", (5, 21, 0), None,
         "Gemma 2 no longer runs SDPA (attention logit soft-capping): _supports_sdpa is False, so the default "
         "attention is eager (the b x heads x q x k scores), and sdpa_attention_forward refuses softcap",
         "models/gemma2/modeling_gemma2.py _supports_sdpa and integrations/sdpa_attention.py, wheels 5.20.0 vs "
         "5.21.0 (the PR was not identified)"),
    # ---- vLLM ----
    Rule("vllm-peak-includes-non-torch", "vllm", None, (0, 9, 1),
         "the profiled peak also takes in all device memory outside torch, the CUDA context included",
         "vllm 0.8.5 v1/worker/gpu_worker.py:177-212"),
    Rule("vllm-nccl-in-budget", "vllm", None, (0, 11, 0),
         "the memory snapshot is taken before NCCL starts, so its buffers count in the budget",
         "vllm 0.10.2 v1/worker/gpu_worker.py:175-177"),
    Rule("vllm-moe-workspace-manager", "vllm", (0, 13, 0), None,
         "the fused-MoE workspaces come from the worker's WorkspaceManager and stay allocated, so the profile "
         "peak is their sum with the sampler's dummy run", "vllm 0.13.0 v1/worker/workspace.py; 0.19.0 "
         "fused_moe/modular_kernel.py:1063 (absent in 0.12.0)"),
    Rule("vllm-triton-top-k-top-p", "vllm", (0, 17, 0), None,
         "top-k/top-p of 8 or more rows runs a Triton kernel in place with a per-SM scratch instead of a sort "
         "(the sampler's dummy run holds 14 bytes a logit, not 28)", "vllm PR #33538; 0.17.0 "
         "v1/sample/ops/topk_topp_sampler.py:251-252, topk_topp_triton.py:1010-1021 (absent in 0.16.0)"),
    Rule("vllm-triton-top-k-top-p-any-rows", "vllm", (0, 30, 0), None,
         "top-k/top-p runs the Triton kernel for any number of rows (the sort path no longer serves batches of "
         "fewer than 8); the kernel's per-SM scratch is unchanged (0.28-0.29 not read)",
         "vllm 0.30.0 v1/sample/ops/topk_topp_sampler.py:374-375 vs 0.27.0 :360; topk_topp_triton.py:1680-1693"),
    Rule("vllm-request-rounded-up", "vllm", (0, 14, 0), None,
         "requested memory is math.ceil(total x utilization)", "vllm 0.14 v1/worker/gpu_worker.py:234"),
    Rule("vllm-cuda-graphs-in-budget", "vllm", (0, 20, 0), None,
         "the CUDA-graph estimate is deducted from the KV budget (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1); "
         "the 0.20-0.34 logs say \"default since v0.21.0\", but the released 0.20.0 already defaults it on",
         "vllm 0.20.0 envs.py:1724-1725 default \"1\" (0.19.0 envs.py:1654-1655 \"0\"), v1/worker/gpu_worker.py:"
         "401, 449-462"),
    Rule("vllm-utilization-0.92", "vllm", (0, 20, 0), None,
         "the default gpu_memory_utilization is 0.92 (0.90 before)", "vllm config/cache.py"),
    Rule("vllm-extensible-kv-cache", "vllm", (0, 34, 0), None,
         "the KV cache is sized from the memory free after warmup and CUDA-graph capture, less a margin of "
         "max(1 GiB, 0.75 x the transient peak) and the transient peak itself; gpu_memory_utilization defaults "
         "to 1.0 (on unless --kv-cache-memory or --no-enable-extensible-kv-cache)",
         "vllm 0.34.0 v1/worker/extensible_kv_cache.py:64-65, 592-618; config/cache.py:216-234, 495-501 "
         "(absent in 0.33.0)"),
    Rule("vllm-tokens-from-concurrency", "vllm", (0, 21, 0), None,
         "'GPU KV cache size' is int(concurrency x max_model_len), not blocks x block_size",
         "vllm 0.33 v1/core/kv_cache_utils.py:1120-1128"),
    Rule("vllm-typo-models-s", "vllm", None, (0, 22, 0),
         "the refusal says \"models's max seq len\"", "vllm 0.10.2 v1/core/kv_cache_utils.py:708-715"),
    Rule("vllm-hybrid-kv-manager", "vllm", (0, 10, 0), None,
         "sliding-window and full-attention layers get their own block groups", "vllm 0.10.2 kv_cache_utils.py:895-1034"),
    Rule("vllm-chunked-hybrid-off", "vllm", (0, 10, 1), (0, 14, 0),
         "a model with chunked local attention (Llama 4) turns the hybrid KV cache manager off unless "
         "VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE=1 (default 0): its chunked layers are cached "
         "for the whole max_model_len", "vllm 0.11.0 config/__init__.py:520, envs.py:1391; 0.14.0 envs.py:1469 "
         "default 1"),
    Rule("vllm-hybrid-prefix-caching", "vllm", (0, 26, 0), None,
         "prefix caching is on by default for hybrid linear-attention models ('align' mode: one more state "
         "block per request and group)", "vllm 0.33 config/model.py:2277-2279, models/config.py:763-779"),
    Rule("vllm-gdn-checkpoint-block", "vllm", (0, 33, 0), None,
         "with prefix caching, FlashInfer's Gated DeltaNet prefill (the auto choice on SM90) aligns blocks to 64 "
         "tokens and keeps a checkpoint block per request and group",
         "vllm 0.33 qwen_gdn_linear_attn.py:148-250, v1/kv_cache_interface.py:1135-1141"),
    Rule("vllm-max-num-seqs-capped", "vllm", None, (0, 11, 0),
         "max_num_seqs defaults to min(its default, max_num_batched_tokens)", "vllm 0.10.2 engine/arg_utils.py:1657-1744"),
    Rule("vllm-large-tier-160g", "vllm", (0, 30, 0), None,
         "GPUs of 160 GiB or more get the 16384 / 1024 scheduler defaults", "vllm 0.33 engine/arg_utils.py:2940-3039"),
    Rule("vllm-capture-steps-16", "vllm", (0, 33, 0), None,
         "CUDA-graph sizes step by 16 above 256", "vllm 0.33 config/vllm.py _set_cudagraph_sizes"),
    # ---- SGLang ----
    Rule("sglang-mamba-extra-buffer", "sglang", (0, 5, 23), None,
         "running requests of a linear-attention model are capped at the state slots / 5 (the overlap "
         "scheduler's extra_buffer), not / 3 (0.5.4; versions between not read)",
         "sglang 0.5.23 mem_cache/kv_cache_configurator.py:3062-3172; 0.5.4 model_runner.py:1646-1665"),
    Rule("sglang-request-pool-plus-one", "sglang", None, (0, 4, 7),
         "the request-to-token pool has one more slot than max_running_requests", "sglang 0.4.6.post5 model_runner.py:904"),
    Rule("sglang-mfs-by-tp-and-pp", "sglang", (0, 4, 6), (0, 4, 9),
         "the default mem_fraction_static table is keyed on tp x pp", "sglang 0.4.6.post5 server_args.py:247-268"),
    Rule("sglang-mfs-reserve-by-gpu", "sglang", (0, 4, 9), (0, 5, 0),
         "the default mem_fraction_static reserves memory by GPU size", "sglang 0.4.10.post2 server_args.py:310-349"),
    Rule("sglang-mfs-reserve-by-workload", "sglang", (0, 5, 0), None,
         "the reserve follows the chunked-prefill size, the CUDA-graph batch and tp x pp",
         "sglang 0.5.3 server_args.py:637-675"),
    # ---- llama.cpp (build numbers; dates from logs, not bisected) ----
    Rule("llamacpp-iswa", "llama.cpp", (5400,), None,
         "sliding-window layers get their own cache of about the window (about May 2025, PR #13194)",
         "src/llama-kv-cache-iswa.cpp:47-70"),
    Rule("llamacpp-flash-attn-auto", "llama.cpp", (6300,), None,
         "-fa defaults to auto: flash attention wherever the backend supports it (about Sep 2025)",
         "src/llama-context.cpp"),
    Rule("llamacpp-pad-256", "llama.cpp", (7000,), None,
         "n_ctx is padded to 256 and each stream to 256 cells; the sliding cache is padded to 256 (about Nov 2025); "
         "before, n_ctx was padded to 256 with flash attention and 32 without", "src/llama-context.cpp:149-164"),
    Rule("llamacpp-outputs-max", "llama.cpp", (7600,), None,
         "the compute reserve holds n_outputs_max rows of logits, not n_ubatch (about Jan 2026)",
         "logs of 2026 builds (tests/data/golden_serving.json)"),
    Rule("llamacpp-mla-no-v", "llama.cpp", (7600,), None,
         "MLA caches no separate V: V is a view of K (about Jan 2026)", "logs of 2026 builds"),
    # ---- torchtitan (assets/version.txt: 0.0.2 until 2025-06, 0.1.0, 0.2.0 from 2025-10) ----
    Rule("torchtitan-frees-logits", "torchtitan", (0, 0, 2), None,
         "forward_backward_step deletes the model's bf16 logits before loss.backward(): only the loss's fp32 "
         "log-softmax is held through the loss backward", "torchtitan PR #391 (e29b6b4d); train.py:541 @4a950ea"),
    Rule("torchtitan-compiles-loss", "torchtitan", (0, 1, 0), None,
         "with compile enabled the loss is compiled too (compile.components includes loss, PR #1608): the fp32 "
         "upcast and log-softmax are fused, the graph saves the bf16 logits and a log-sum-exp per token",
         "torchtitan PR #1033 (bbb1b616); components/loss.py:31-36 @4a950ea"),
    Rule("torchtitan-repeats-kv", "torchtitan", None, (0, 2, 2),
         "Llama attention repeats K and V to every query head before SDPA (repeat_kv): under context parallelism "
         "the ring attention gathers n_heads, not n_kv_heads, per token", "torchtitan PR #2259 (ff0829c1, "
         "2026-01-27) removed it; models/llama/model.py:201-209 @9dec370"),
)
_BY_NAME = {r.name: r for r in RULES}


def holds(name: str, version: tuple) -> bool:
    """Whether the named rule holds for ``version`` of its library."""
    return _BY_NAME[name].holds(version)


def rules_markdown() -> str:
    """The table of rules, as the Method page shows it."""
    out = ["| library | versions | rule | effect | source |", "| --- | --- | --- | --- | --- |"]
    for r in RULES:
        out.append(f"| {r.library} | {r.range_text()} | `{r.name}` | {r.effect} | {r.source} |")
    return "\n".join(out) + "\n"
