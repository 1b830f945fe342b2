// Mode peft on the page: a pasted adapter_config.json and the training levers give the CLI's answer,
// and a bad config is reported next to its field.
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

const CONFIG = { peft_type: "LORA", r: 8, target_modules: "all-linear", use_dora: true };

test("a PEFT config in the link gives the CLI's peak", async () => {
  const ctx = await h.browser.newContext();
  const page = await ctx.newPage();
  const query = `?model=llama-3.2-1b&mode=peft&batch=2&seq=1024&loss=liger-flce&peft=${encodeURIComponent(JSON.stringify(CONFIG))}&gpu=a100-80gb`;
  await page.goto(h.base + query);
  const result = await waitForResult(page);
  const dir = mkdtempSync(join(tmpdir(), "peft-"));
  writeFileSync(join(dir, "adapter_config.json"), JSON.stringify(CONFIG));
  const py = process.env.PYTHON || "python3";
  const cli = JSON.parse(execFileSync(py, ["-m", "pycore", "estimate", "--model", "llama-3.2-1b", "--mode", "peft",
    "--peft-config", join(dir, "adapter_config.json"), "--batch", "2", "--seq", "1024", "--loss-kernel", "liger-flce",
    "--gpu", "a100-80gb", "--json"], { cwd: ROOT }).toString());
  assert.equal(result.peak, (cli.device_total_bytes / 2 ** 30).toFixed(2));
  assert.equal(await page.isVisible('textarea[name="peft"]'), true);
  await ctx.close();
});

test("a config the core refuses is reported next to the adapter field", async () => {
  const ctx = await h.browser.newContext();
  const page = await ctx.newPage();
  await page.goto(h.base + "?model=llama-3.2-1b&mode=peft&peft=" + encodeURIComponent(JSON.stringify(CONFIG)));
  await waitForResult(page);
  await page.fill('textarea[name="peft"]', '{"peft_type": "LORA", "r": 0}');
  await page.waitForFunction(() => (document.getElementById("err-peft")?.textContent || "").length > 0, null, { timeout: 60000 });
  assert.match(await page.textContent("#err-peft"), /positive integer/);
  // a link with a refused config says so and falls back to no config
  await page.goto(h.base + "?model=llama-3.2-1b&mode=peft&peft=" + encodeURIComponent('{"peft_type": "XLORA"}'));
  await page.waitForFunction(() => /XLORA is not modelled/.test(document.getElementById("messages")?.textContent || ""),
    null, { timeout: 60000 });
  await ctx.close();
});

test("a fit plan that shrinks the adapter applies its config to the form", async () => {
  const ctx = await h.browser.newContext();
  const page = await ctx.newPage();
  // LoHa r=512 on every linear of Llama 3.1 8B does not fit a 40 GB A100; the plans halve r (fit search)
  const big = { peft_type: "LOHA", r: 512, target_modules: "all-linear" };
  await page.goto(h.base + `?model=llama-3.1-8b&mode=peft&batch=1&seq=512&ckpt=1&peft=${encodeURIComponent(JSON.stringify(big))}&gpu=a100-40gb`);
  await waitForResult(page);
  const plan = page.locator('[data-testid="fit-plan"]', { hasText: "LOHA r=128 instead of 512" });
  await plan.first().waitFor({ timeout: 60000 });
  await plan.first().locator("button").first().click();
  await page.waitForFunction(() => /"r":128/.test(document.querySelector('textarea[name="peft"]').value), null, { timeout: 60000 });
  await waitForResult(page);
  assert.match(page.url(), /peft=/);
  await ctx.close();
});

test("dropping an adapter_config.json on the PEFT field estimates it", async () => {
  const ctx = await h.browser.newContext();
  const page = await ctx.newPage();
  await page.goto(h.base + "?model=llama-3.2-1b&mode=peft&peft=" + encodeURIComponent(JSON.stringify(CONFIG)));
  const first = await waitForResult(page);
  await page.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(['{"peft_type": "IA3", "target_modules": ["k_proj", "v_proj", "down_proj"]}'], "adapter_config.json",
      { type: "application/json" }));
    document.querySelector('textarea[name="peft"]').dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  });
  const next = await waitForResult(page, first.computed);
  assert.notEqual(next.peak, first.peak);
  assert.match(await page.inputValue('textarea[name="peft"]'), /IA3/);
  assert.match(page.url(), /IA3/);
  await ctx.close();
});
