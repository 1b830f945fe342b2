// A training config pasted into the page (issue 23): the core reads it into the page's link, the page
// shows the same answer as `python -m pycore estimate --from FILE`, and lists the fields used and ignored.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { start, waitForResult } from "./harness.mjs";
import { ROOT } from "../pyodide/load.mjs";

let h;
before(async () => { h = await start(); });
after(async () => { await h?.close(); });

const py = process.env.PYTHON || "python3";
const cli = (args) => execFileSync(py, ["-m", "pycore", ...args], { cwd: ROOT }).toString();

test("a pasted axolotl config sets the form and gives the command line's answer", async () => {
  const file = join(ROOT, "tests", "data", "configs", "axolotl-lora-8b.yml");
  const expected = JSON.parse(cli(["estimate", "--from", file, "--json"]));
  const ctx = await h.browser.newContext();
  const page = await ctx.newPage();
  await page.goto(h.base);
  const first = await waitForResult(page);
  await page.click("#from-config summary");
  await page.fill("#train-config-text", readFileSync(file, "utf8"));
  await page.click("#train-config-read");
  const result = await waitForResult(page, first.computed);
  await page.waitForFunction(() => document.querySelector('[data-testid="train-config-status"]').textContent.startsWith("Read as"));
  assert.equal(result.peak, (expected.device_total_bytes / 2 ** 30).toFixed(2));
  const url = new URL(page.url());
  assert.equal(url.searchParams.get("mode"), "lora");
  assert.equal(url.searchParams.get("rank"), "32");
  assert.equal(url.searchParams.get("model"), "meta-llama-3-8b");
  const fields = await page.textContent('[data-testid="train-config-fields"]');
  assert.match(fields, /sequence_len → workload\.seq_len = 4096/);
  assert.match(fields, /Ignored: .*wandb_project/);
  await page.fill("#train-config-text", "base_model: &m x\n");
  await page.click("#train-config-read");
  await page.waitForFunction(() => /anchors/.test(document.querySelector('[data-testid="train-config-status"]').textContent));
  await ctx.close();
});
