// A model by its Hugging Face id (issue 12), with the Hub mocked by Playwright's routing: nothing here
// needs the network. The fetch happens only on the button or a shared link, and every failure says why.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { start, waitForResult } from "./harness.mjs";
import { ROOT } from "../pyodide/load.mjs";

let h;
before(async () => { h = await start(); });
after(async () => { await h?.close(); });

// Qwen/Qwen3-8B's published config.json (the fields the estimate reads)
const QWEN3_8B = { architectures: ["Qwen3ForCausalLM"], model_type: "qwen3", hidden_size: 4096, intermediate_size: 12288,
  num_hidden_layers: 36, num_attention_heads: 32, num_key_value_heads: 8, head_dim: 128, vocab_size: 151936,
  tie_word_embeddings: false, max_position_embeddings: 40960, rope_theta: 1000000, torch_dtype: "bfloat16" };
const HUB = "https://huggingface.co/";

async function hubPage(handler) {
  const ctx = await h.browser.newContext();
  const seen = [];
  await ctx.route(`${HUB}**`, (route) => { seen.push(route.request().url()); return handler(route); });
  const page = await ctx.newPage();
  await page.goto(h.base + "?mode=lora");
  const result = await waitForResult(page);
  await page.check('input[name="source"][value="config"]');
  return { ctx, page, seen, result };
}
const json = (body, status = 200) => (route) => route.fulfill({ status, contentType: "application/json",
  headers: { "access-control-allow-origin": "*" }, body: typeof body === "string" ? body : JSON.stringify(body) });

test("a Hub id fetches its config.json on the button, estimates it as the CLI does, and a shared link fetches again", async () => {
  const { ctx, page, seen } = await hubPage(json(QWEN3_8B));
  assert.equal(seen.length, 0);                                   // nothing fetched before the action
  await page.fill("#hub-id", "Qwen/Qwen3-8B");
  assert.equal(seen.length, 0);                                   // nor on typing
  const before = await page.evaluate(() => document.body.dataset.computed);
  await page.click("#hub-fetch");
  const result = await waitForResult(page, before);
  assert.deepEqual(seen, [`${HUB}Qwen/Qwen3-8B/resolve/main/config.json`]);
  assert.match(page.url(), /hub=Qwen%2FQwen3-8B/);
  const dir = mkdtempSync(join(tmpdir(), "gmp-hub-"));
  writeFileSync(join(dir, "config.json"), JSON.stringify(QWEN3_8B));
  const py = process.env.PYTHON || "python3";
  const cli = JSON.parse(execFileSync(py, ["-m", "pycore", "estimate", "--hf-config", join(dir, "config.json"), "--mode", "lora", "--json"], { cwd: ROOT }).toString());
  assert.equal(result.peak, (cli.device_total_bytes / 2 ** 30).toFixed(2));
  const url = page.url();
  const other = await ctx.newPage();
  await other.goto(url);
  const again = await waitForResult(other);
  assert.equal(again.peak, result.peak);
  assert.equal(seen.length, 2);
  await ctx.close();
});

for (const [name, handler, pattern] of [
  ["gated (401)", json({ error: "Access to model is restricted" }, 401), /gated or private \(HTTP 401\).*paste or drop/],
  ["missing (404)", json({ error: "Repository not found" }, 404), /no repository .* \(HTTP 404\)/],
  ["offline", (route) => route.abort("internetdisconnected"), /could not reach huggingface\.co/],
  ["too large", json(`{"model_type": "llama", "pad": "${"x".repeat(1_100_000)}"}`), /larger than 1,000,000 bytes/],
]) {
  test(`a Hub fetch that fails says why and offers the paste fallback: ${name}`, async () => {
    const { ctx, page, result } = await hubPage(handler);
    await page.fill("#hub-id", "meta-llama/Llama-3.1-8B");
    await page.click("#hub-fetch");
    await page.waitForFunction(() => /Could not fetch/.test(document.querySelector("#hub-status").textContent));
    assert.match(await page.textContent("#hub-status"), pattern);
    assert.equal(await page.textContent('[data-testid="peak"]'), result.peak);      // the last answer stays
    assert.doesNotMatch(page.url(), /hub=/);
    await ctx.close();
  });
}

test("malformed or hostile content from the Hub is the core's to refuse, and no script runs", async () => {
  const { ctx, page } = await hubPage(json('{"model_type": "llama", "hidden_size": '));
  let dialogs = 0;
  page.on("dialog", (d) => { dialogs++; d.dismiss(); });
  await page.fill("#hub-id", "evil/model");
  await page.click("#hub-fetch");
  await page.waitForFunction(() => /^config\.json: .*not valid JSON/.test(document.querySelector("#messages").textContent));
  await ctx.route(`${HUB}**`, json({ model_type: "<img src=x onerror=alert(1)>", hidden_size: 64, num_hidden_layers: 2,
    num_attention_heads: 4, vocab_size: 100, intermediate_size: 128, name_or_path: "<script>alert(2)</script>" }));
  await page.fill("#hub-id", "evil/model2");
  await page.click("#hub-fetch");
  await page.waitForFunction(() => /Fetched evil\/model2/.test(document.querySelector("#hub-status").textContent));
  await page.waitForTimeout(500);
  assert.equal(dialogs, 0);
  assert.equal(await page.$$eval("img, script:not([src])", (els) => els.length), 0);
  // a malformed id is refused before any request
  await page.fill("#hub-id", "../../etc/passwd");
  await page.click("#hub-fetch");
  assert.match(await page.textContent("#hub-status"), /is not a Hugging Face model id/);
  await ctx.close();
});
