// Serving on the page (issue 10): a serving link gives the CLI's KV tokens and concurrency, the
// engine's settings come from the schema and change with the engine, and the GGUF search for a
// card can be applied.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { start, waitForResult } from "./harness.mjs";
import { ROOT } from "../pyodide/load.mjs";

let h;
before(async () => { h = await start(); });
after(async () => { await h?.close(); });

function cli(args) {
  const py = process.env.PYTHON || "python3";
  return JSON.parse(execFileSync(py, ["-m", "pycore", "serve", ...args, "--json"], { cwd: ROOT }).toString());
}

async function open(query) {
  const ctx = await h.browser.newContext();
  const page = await ctx.newPage();
  await page.goto(h.base + query);
  const result = await waitForResult(page);
  return { ctx, page, result };
}

test("a vLLM link shows the CLI's KV tokens, concurrency and the engine's log lines", async () => {
  const { ctx, page, result } = await open("?model=llama-3.1-8b&mode=serve&engine=vllm&version=0.10.2&max_model_len=32768&tensor_parallel_size=2&gpu=a100-80gb");
  const res = cli(["--model", "llama-3.1-8b", "--engine", "vllm", "--version", "0.10.2", "--max-model-len", "32768",
    "--tp", "2", "--gpu", "a100-80gb"]);
  assert.equal(result.peak, (res.device_total_bytes / 2 ** 30).toFixed(2));
  assert.equal(await page.textContent('[data-testid="kv-tokens"]'), res.kv_cache_tokens.toLocaleString("en"));
  assert.equal(await page.textContent('[data-testid="concurrency"]'), String(res.max_concurrency));
  assert.match(await page.textContent("#engine-log"), /GPU KV cache size: [\d,]+ tokens/);
  assert.equal(await page.isVisible('input[name="gpu_memory_utilization"]'), true);
  assert.equal(await page.isVisible('input[name="n_ctx"]'), false);
  assert.equal(await page.isVisible('input[name="batch"]'), false);
  await ctx.close();
});

test("switching the engine to llama.cpp shows its settings, and the GGUF search picks a preset", async () => {
  const { ctx, page } = await open("?model=llama-3.1-8b&mode=serve&gpu=rtx-3060-12gb");
  await page.selectOption('select[name="engine"]', "llamacpp");
  await page.waitForFunction(() => document.querySelector('input[name="n_ctx"]').closest("label").hidden === false);
  assert.equal(await page.isVisible('input[name="gpu_memory_utilization"]'), false);
  await page.fill('input[name="n_ctx"]', "16384");
  await page.waitForSelector('[data-testid="gguf-table"]', { timeout: 30000 });
  await page.waitForFunction(() => new URLSearchParams(location.search).get("n_ctx") === "16384");
  const res = cli(["--model", "llama-3.1-8b", "--engine", "llamacpp", "--n-ctx", "16384", "--gpu", "rtx-3060-12gb", "--solve"]);
  const best = res.solutions.best_gguf.quant;
  assert.match(await page.textContent('[data-testid="serve-solutions"]'), /Longest context/);
  const rows = await page.$$eval('[data-testid="gguf-table"] tbody tr', (trs) => trs.map((t) => t.cells[0].textContent));
  assert.deepEqual(rows, res.solutions.gguf.map((c) => c.quant));
  // Use the best preset: the link and the form follow
  const index = rows.indexOf(best);
  await page.click(`[data-testid="gguf-table"] tbody tr:nth-child(${index + 1}) button`);
  await page.waitForFunction((q) => new URLSearchParams(location.search).get("quant") === q || q === "Q4_K_M", best);
  assert.equal(await page.inputValue('select[name="quant"]'), best);
  await ctx.close();
});

test("a vLLM context that does not fit shows the engine's refusal", async () => {
  const { ctx, page, result } = await open("?model=llama-3.1-8b&mode=serve&engine=vllm&version=0.10.2&kv_cache_memory_bytes=1073741824&max_model_len=131072");
  assert.equal(result.verdict, "does-not-fit");
  assert.match(await page.textContent("#refusal"), /estimated maximum model length is 8192/);
  await ctx.close();
});

test("a whole-number choice (block size) is read from a link", async () => {
  const { ctx, page } = await open("?model=llama-3.1-8b&mode=serve&engine=vllm&block_size=32&version=0.10.2&kv_cache_memory_bytes=1073741824&max_model_len=4096");
  assert.equal(await page.inputValue('select[name="block_size"]'), "32");
  assert.match(await page.textContent("#engine-log"), /GPU KV cache size: 8,192 tokens/);   // 1 GiB / (2 x 32 x 8 x 128 x 2 B x 32 layers) = 256 blocks of 32
  await ctx.close();
});

test("a setting the core rejects in a serving link is named and falls back", async () => {
  const { ctx, page } = await open("?model=llama-3.1-8b&mode=serve&engine=vllm&gpu_memory_utilization=7");
  assert.match(await page.textContent("#messages"), /gpu_memory_utilization/);
  await ctx.close();
});

test("a hybrid linear-attention model (Qwen3-Next) on vLLM and SGLang gives the CLI's figures", async () => {
  for (const [query, args] of [
    ["?model=qwen3-next-80b-a3b-instruct&mode=serve&engine=vllm&version=0.26.0&max_model_len=32768&tensor_parallel_size=2&gpu=h200-141gb",
      ["--engine", "vllm", "--version", "0.26.0", "--max-model-len", "32768", "--tp", "2"]],
    ["?model=qwen3-next-80b-a3b-instruct&mode=serve&engine=sglang&tp_size=2&gpu=h200-141gb", ["--engine", "sglang", "--tp", "2"]]]) {
    const { ctx, page, result } = await open(query);
    const res = cli(["--model", "qwen3-next-80b-a3b-instruct", ...args, "--gpu", "h200-141gb"]);
    assert.equal(result.peak, (res.device_total_bytes / 2 ** 30).toFixed(2), query);
    assert.equal(await page.textContent('[data-testid="kv-tokens"]'), res.kv_cache_tokens.toLocaleString("en"), query);
    assert.equal(await page.textContent('[data-testid="concurrency"]'), String(res.max_concurrency), query);
    await ctx.close();
  }
});
