// A PEFT adapter by its Hub id (issue 24 item 1, on the page): the button fetches the repository's
// adapter_config.json into the PEFT field, which the core reads as a pasted one. The Hub is mocked by
// Playwright's routing; nothing here needs the network.
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

const HUB = "https://huggingface.co/";
const FIRST = { peft_type: "LORA", r: 8, target_modules: ["q_proj", "v_proj"] };
// an adapter_config.json as PEFT saves it (fields the estimate does not read included)
const ADAPTER = { peft_type: "LORA", r: 64, lora_alpha: 16, target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"],
  lora_dropout: 0.05, bias: "none", task_type: "CAUSAL_LM", base_model_name_or_path: "meta-llama/Llama-3.2-1B" };

async function peftPage(status, body) {
  const ctx = await h.browser.newContext();
  const seen = [];
  await ctx.route(`${HUB}**`, (route) => {
    seen.push(route.request().url());
    return route.fulfill({ status, contentType: "application/json", headers: { "access-control-allow-origin": "*" },
      body: JSON.stringify(body) });
  });
  const page = await ctx.newPage();
  await page.goto(h.base + `?model=llama-3.2-1b&mode=peft&batch=2&seq=1024&gpu=a100-80gb&peft=${encodeURIComponent(JSON.stringify(FIRST))}`);
  const result = await waitForResult(page);
  return { ctx, page, seen, result };
}

test("an adapter id fetches its adapter_config.json on the button and gives the CLI's answer", async () => {
  const { ctx, page, seen } = await peftPage(200, ADAPTER);
  assert.equal(await page.isVisible("#peft-hub-fetch"), true);
  await page.fill("#peft-hub-id", "https://huggingface.co/someone/llama-3.2-1b-lora");
  assert.equal(seen.length, 0);                                  // nothing fetched on typing
  const before = await page.evaluate(() => document.body.dataset.computed);
  await page.click("#peft-hub-fetch");
  const result = await waitForResult(page, before);
  assert.deepEqual(seen, [`${HUB}someone/llama-3.2-1b-lora/resolve/main/adapter_config.json`]);
  assert.equal(JSON.parse(await page.inputValue('textarea[name="peft"]')).r, 64);
  const dir = mkdtempSync(join(tmpdir(), "peft-hub-"));
  writeFileSync(join(dir, "adapter_config.json"), JSON.stringify(ADAPTER));
  const py = process.env.PYTHON || "python3";
  const cli = JSON.parse(execFileSync(py, ["-m", "pycore", "estimate", "--model", "llama-3.2-1b", "--mode", "peft",
    "--peft-config", join(dir, "adapter_config.json"), "--batch", "2", "--seq", "1024", "--gpu", "a100-80gb", "--json"],
  { cwd: ROOT }).toString());
  assert.equal(result.peak, (cli.device_total_bytes / 2 ** 30).toFixed(2));
  await ctx.close();
});

test("a missing adapter says why and leaves the field as it was; other modes hide the fetch", async () => {
  const { ctx, page } = await peftPage(404, { error: "Entry not found" });
  await page.fill("#peft-hub-id", "someone/no-such-adapter");
  await page.click("#peft-hub-fetch");
  await page.waitForFunction(() => /HTTP 404/.test(document.getElementById("peft-hub-status").textContent), null, { timeout: 60000 });
  assert.match(await page.textContent("#peft-hub-status"), /no repository someone\/no-such-adapter with an adapter_config.json/);
  assert.equal(JSON.parse(await page.inputValue('textarea[name="peft"]')).r, 8);
  await page.selectOption('select[name="mode"]', "lora");
  await page.waitForFunction(() => document.getElementById("peft-hub").hidden, null, { timeout: 60000 });
  await ctx.close();
});
