// pycore under Pyodide (Python 3.14, npm package pinned in package.json) gives the same
// responses as under CPython for the same requests.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { pyodideWithCore, ROOT } from "./load.mjs";

const REQUESTS = [
  { model: "llama-3.1-8b", workload: { mode: "lora", batch_size: 1, seq_len: 2048, gradient_checkpointing: true }, gpu: "rtx-4090-24gb", solve: true },
  { model: "qwen3-30b-a3b", workload: { mode: "inference", batch_size: 16, seq_len: 4096, new_tokens: 256 }, precision: { weights: "int4" } },
  { model: "gpt2", workload: { mode: "full", batch_size: 8, seq_len: 1024, attention: "eager" }, precision: { weights: "fp32", autocast: "bf16" } },
  { hf_config: { model_type: "gemma2", hidden_size: 256, intermediate_size: 512, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 64, vocab_size: 1000, sliding_window: 128 }, workload: { batch_size: 2, seq_len: 512 } },
  { model: "qwen3-30b-a3b", gpu: "h100-sxm-80gb", workload: { mode: "serve", engine: "vllm", version: "0.10.2", tensor_parallel_size: 2, max_model_len: 32768 }, solve: true },
  { model: "gpt-oss-20b", gpu: "h100-sxm-80gb", workload: { mode: "serve", engine: "sglang", context_length: 65536 } },
  { model: "llama-3.1-8b", gpu: "rtx-4090-24gb", workload: { mode: "serve", engine: "llamacpp", quant: "Q5_K_M", n_ctx: 32768, n_gpu_layers: 20, flash_attn: "on" }, solve: true },
  { model: "nope" },
  { model: "gpt2", workload: { batch_size: -3 } },
  { model: "gpt2", workload: { mode: "lora", lora: { rank: 16.0 } }, parallelism: { data_parallel: 2.0, zero_stage: 1 } },
];
// JSON texts that must get the same structured error on both runtimes. Before the depth bound,
// the first two aborted Pyodide with a fatal stack overflow (CPython answered "nested too deeply").
const TEXTS = ["[".repeat(6000) + "]".repeat(6000), '{"a":'.repeat(5000) + "1" + "}".repeat(5000),
  JSON.stringify({ hf_config: "[".repeat(3000) + "]".repeat(3000) }), "{\"model\": NaN}", "x".repeat(1_000_001)];

function cpython(texts) {
  const script = "import json,sys; from pycore.api import estimate; print(json.dumps([estimate(t) for t in json.load(sys.stdin)]))";
  const python = process.env.PYTHON || "python3";
  return JSON.parse(execFileSync(python, ["-c", script], { cwd: ROOT, input: JSON.stringify(texts) }).toString());
}

test("pycore returns the same responses under Pyodide as under CPython", async () => {
  const py = await pyodideWithCore();
  const version = py.runPython("import sys; sys.version.split()[0]");
  assert.match(version, /^3\.1[4-9]/);
  const texts = [...REQUESTS.map((r) => JSON.stringify(r)), ...TEXTS];
  const expected = cpython(texts);
  const estimate = py.globals.get("pycore").api.estimate;
  texts.forEach((t, i) => {
    const got = JSON.parse(estimate(t));
    const want = JSON.parse(expected[i]);
    assert.deepEqual(got, want, `request ${i}`);
  });
  assert.equal(JSON.parse(expected[0]).status, "ok");
  assert.equal(JSON.parse(expected[7]).errors[0].field, "model");
  for (const i of [4, 5, 6]) assert.ok(JSON.parse(expected[i]).result.kv_cache_tokens > 0, `serving request ${i}`);
  for (let i = REQUESTS.length; i < texts.length; i++) assert.equal(JSON.parse(expected[i]).status, "error", `text ${i}`);
  assert.match(JSON.parse(expected[REQUESTS.length]).errors[0].message, /nested too deeply/);
});
