// "Make it fit" on the page (issue 12): the core's cheapest combinations, the CLI's plans, applied in one click.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { start, waitForResult } from "./harness.mjs";
import { ROOT } from "../pyodide/load.mjs";

let h;
before(async () => { h = await start(); });
after(async () => { await h?.close(); });

test("the page lists the CLI's fit plans and applying one makes the run fit", async () => {
  const ctx = await h.browser.newContext();
  const page = await ctx.newPage();
  await page.goto(h.base + "?model=llama-3.1-8b&w=fp32&amp=bf16&batch=8&seq=4096&gpu=a100-80gb");
  const result = await waitForResult(page);
  assert.equal(result.verdict, "does-not-fit");
  await page.waitForSelector('[data-testid="fit-plan"]');
  const py = process.env.PYTHON || "python3";
  const cli = JSON.parse(execFileSync(py, ["-m", "pycore", "fit", "--model", "llama-3.1-8b", "--autocast", "bf16", "--batch", "8",
    "--seq", "4096", "--gpu", "a100-80gb", "--json"], { cwd: ROOT }).toString()).fit.plans;
  const items = await page.$$eval('[data-testid="fit-plan"]', (lis) => lis.map((li) => [...li.querySelectorAll("ul li")].map((x) => x.textContent)));
  assert.deepEqual(items, cli.map((p) => p.changes.map((c) => `${c.change}: ${c.cost}`)));
  // timing of the search in the worker: what the page waited for the solved answer
  await page.click('[data-testid="fit-plan"]:first-child button');
  const applied = await waitForResult(page, result.computed);
  assert.notEqual(applied.verdict, "does-not-fit");          // fits, or "at risk" within the error band
  assert.equal(applied.peak, (cli[0].device_total_bytes / 2 ** 30).toFixed(2));
  // the plan's changes are the page's state: its micro-batch (absent from the URL when 1, the default),
  // its accumulation and its other levers
  const set = cli[0].set;
  const batch = set["workload.batch_size"];
  if (batch === 1) assert.doesNotMatch(page.url(), /batch=/);
  else assert.match(page.url(), new RegExp(`batch=${batch}&`));
  assert.match(page.url(), new RegExp(`ga=${set["parallelism.gradient_accumulation"]}`));
  if (set["workload.loss_kernel"]) assert.match(page.url(), new RegExp(`loss=${set["workload.loss_kernel"]}`));
  await ctx.close();
});
