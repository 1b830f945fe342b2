// transformers' device_map on the page (issue 26): the hf engine shows devices, max_memory and
// device_map from the schema, and a two-GPU link answers with the CLI's most loaded GPU.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { start, waitForResult } from "./harness.mjs";
import { ROOT } from "../pyodide/load.mjs";

let h;
before(async () => { h = await start(); });
after(async () => { await h?.close(); });

test("an hf link over two GPUs shows the device fields and the most loaded GPU's peak", async () => {
  const ctx = await h.browser.newContext();
  const page = await ctx.newPage();
  await page.goto(h.base + "?model=llama-3.1-70b&mode=serve&engine=hf&devices=2&num_prompts=1&prompt_len=64&max_new_tokens=64&gpu=a100-80gb");
  const result = await waitForResult(page);
  // generate has no engine KV pool: the engines' "KV cache – tokens · – requests" line is not shown
  assert.equal(await page.isVisible("#serve-line"), false);
  const py = process.env.PYTHON || "python3";
  const res = JSON.parse(execFileSync(py, ["-m", "pycore", "serve", "--model", "llama-3.1-70b", "--engine", "hf",
    "--devices", "2", "--num-prompts", "1", "--prompt-len", "64", "--max-new-tokens", "64", "--gpu", "a100-80gb",
    "--json"], { cwd: ROOT }).toString());
  assert.equal(res.per_device.length, 2);
  assert.equal(result.peak, (res.device_total_bytes / 2 ** 30).toFixed(2));
  for (const name of ["devices", "max_memory"]) assert.equal(await page.isVisible(`input[name="${name}"]`), true);
  assert.equal(await page.isVisible('select[name="device_map"]'), true);
  assert.equal(await page.isVisible('input[name="gpu_memory_utilization"]'), false);
  // the layout line names the map and the most loaded GPU
  assert.match(await page.textContent("#layout-line"), new RegExp(`GPU ${res.most_loaded_device} with layers \\d+-\\d+ \\(device_map`));
  // one row per device, with the core's placement and peaks
  const rows = await page.$$eval('[data-testid="per-device"] tbody tr', (trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
  assert.equal(rows.length, res.per_device.length);
  for (const [i, d] of res.per_device.entries()) {
    assert.equal(rows[i][0], `GPU ${d.device}`);
    assert.equal(rows[i][4], `${(d.peak_bytes / 2 ** 30).toFixed(2)} GiB`);
    assert.equal(rows[i][1], d.layers.map(([a, b]) => (a === b ? `${a}` : `${a}–${b}`)).join(", "));
  }
  await ctx.close();
});
