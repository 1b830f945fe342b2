// An engine's start-up log on the page (issue 20): the pasted log goes to the core (pycore.api.engine_log),
// the page shows the CLI's comparison term by term and the term it names for the gap.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { start, waitForResult } from "./harness.mjs";
import { ROOT } from "../pyodide/load.mjs";

let h;
before(async () => { h = await start(); });
after(async () => { await h?.close(); });

// a public vLLM 0.10.2 log (its source is in tests/data/golden_serving.json), Qwen3-235B FP8 on 8 L40S
const GOLDEN = JSON.parse(readFileSync(join(ROOT, "tests", "data", "golden_serving.json"), "utf8")).checks;
const LOG = GOLDEN.find((c) => c.case === "l40s-qwen3-235b-fp8-tp8-v0.10.2").verbatim_log.join("\n") + "\n";

test("a pasted vLLM start-up log is compared term by term as the CLI compares it", async () => {
  const ctx = await h.browser.newContext();
  const page = await ctx.newPage();
  await page.goto(h.base + "?gpu=l40s-48gb");
  await waitForResult(page);
  await page.click("#engine-log-check summary");
  await page.fill("#engine-log-text", LOG);
  await page.click("#engine-log-run");
  await page.waitForSelector('[data-testid="engine-log-gap"]', { timeout: 30000 });
  const dir = mkdtempSync(join(tmpdir(), "gmp-log-"));
  const file = join(dir, "vllm.log");
  writeFileSync(file, LOG);
  const py = process.env.PYTHON || "python3";
  const cli = JSON.parse(execFileSync(py, ["-m", "pycore", "check", "--engine-log", file, "--gpu", "l40s-48gb", "--json"],
    { cwd: ROOT }).toString());
  assert.equal(await page.textContent('[data-testid="engine-log-gap"]'), `Gap: ${cli.explanation}`);
  assert.match(cli.explanation, /^profile peak \(activation\) explains most of the gap/);
  const rows = await page.$$eval("#engine-log-table tbody tr", (trs) => trs.length);
  assert.equal(rows, cli.rows.length);
  const kv = await page.$$eval("#engine-log-table tbody tr", (trs) => trs.map((tr) => tr.textContent).find((t) => t.startsWith("KV tokens")));
  assert.match(kv, /238,208 tokens/);                 // the figure the engine printed
  await ctx.close();
});

test("another text than an engine log gets the core's message, not a table", async () => {
  const ctx = await h.browser.newContext();
  const page = await ctx.newPage();
  await page.goto(h.base);
  await waitForResult(page);
  await page.click("#engine-log-check summary");
  await page.fill("#engine-log-text", "hello, this is not a log\n");
  await page.click("#engine-log-run");
  await page.waitForFunction(() => document.querySelector("#engine-log-status").textContent.includes("engine_log"));
  assert.match(await page.textContent("#engine-log-status"), /no start-up line of vLLM, SGLang or llama\.cpp/);
  assert.equal(await page.$$eval("#engine-log-table", (t) => t.length), 0);
  await ctx.close();
});
