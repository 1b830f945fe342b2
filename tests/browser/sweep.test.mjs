// Sweeps on the page (issue 12): one request to the core draws every point as stacked areas, with the
// GPU's capacity as a line, the out-of-memory point marked, a point's breakdown on hover and a table
// (the chart is web/chart.js's uPlot canvas since issue 25: the test reads its legend, notes and table).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { start, waitForResult } from "./harness.mjs";
import { ROOT } from "../pyodide/load.mjs";

let h;
before(async () => { h = await start(); });
after(async () => { await h?.close(); });

test("a batch sweep draws the core's points, the capacity line and the out-of-memory point", async () => {
  const ctx = await h.browser.newContext();
  const page = await ctx.newPage();
  await page.goto(h.base + "?mode=lora&seq=1024&gpu=a100-80gb");
  await waitForResult(page);
  await page.selectOption("#sweep-field", "batch_size");
  await page.click("#sweep-run");
  await page.waitForSelector('[data-testid="sweep-chart"] canvas');
  const py = process.env.PYTHON || "python3";
  const req = { model: "llama-3.1-8b", workload: { mode: "lora", seq_len: 1024 }, gpu: "a100-80gb", sweep: { field: "batch_size" } };
  const sw = JSON.parse(execFileSync(py, ["-c", "import sys, json; from pycore.api import estimate; print(estimate(sys.argv[1]))",
    JSON.stringify(req)], { cwd: ROOT }).toString()).result.sweep;
  const rows = await page.$$eval("#sweep-rows tbody tr", (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
  assert.deepEqual(rows.map((r) => Number(r[0])), sw.points.map((p) => p.value));
  assert.deepEqual(rows.map((r) => r[1]), sw.points.map((p) => `${(p.device_total_bytes / 2 ** 30).toFixed(2)} GiB`));
  assert.equal(await page.$$eval('[data-testid="sweep-chart"] [data-testid="capacity-line"]', (l) => l.length), 1);
  assert.ok(sw.oom_at, "the sweep reaches a batch that does not fit");
  assert.match(await page.textContent('[data-testid="sweep-chart"]'), new RegExp(`out of memory from ${sw.oom_at}`));
  // the pointer over the out-of-memory point (placed through the chart's own x scale)
  await page.locator('[data-testid="sweep-chart"] .u-over').scrollIntoViewIfNeeded();
  const at = await page.$eval('[data-testid="sweep-chart"]', (el, v) => {
    const over = el.querySelector(".u-over").getBoundingClientRect();
    return { x: over.x + el.plot.valToPos(v, "x"), y: over.y + over.height / 2 };
  }, sw.oom_at);
  await page.mouse.move(at.x, at.y);
  const point = '[data-testid="sweep-chart"] [data-testid="chart-point"]';
  await page.waitForFunction(([sel, v]) => document.querySelector(sel).textContent.startsWith(`batch size ${v}:`), [point, sw.oom_at]);
  const p = sw.points.find((x) => x.value === sw.oom_at);
  assert.equal(await page.textContent(point), `batch size ${sw.oom_at}: ${(p.device_total_bytes / 2 ** 30).toFixed(2)} GiB (does not fit)`);
  const weights = await page.textContent('[data-testid="sweep-chart"] li[data-key="weights"] .val');
  assert.equal(weights, `${(p.terms[0].bytes / 2 ** 30).toFixed(2)} GiB`);
  await ctx.close();
});

test("on a 390 px wide screen nothing overflows sideways; screenshots at 1280 and 390 px", async () => {
  for (const width of [1280, 390]) {
    const ctx = await h.browser.newContext({ viewport: { width, height: 900 } });
    const page = await ctx.newPage();
    await page.goto(h.base + "?model=llama-2-7b&w=fp32&amp=bf16&gpu=a100-80gb");
    await waitForResult(page);
    await page.click("#sweep-run");
    await page.waitForSelector('[data-testid="sweep-chart"] canvas');
    const shot = await page.screenshot({ fullPage: true });
    assert.ok(shot.length > 10000);
    const overflow = await page.evaluate(() => ({ doc: document.documentElement.scrollWidth, view: innerWidth,
      wide: [...document.querySelectorAll("input, select, button, textarea, svg, canvas")].filter((el) => {
        const r = el.getBoundingClientRect();
        return r.width > 0 && (r.right > innerWidth + 1 || r.left < -1);
      }).map((el) => el.id || el.name || el.tagName) }));
    assert.deepEqual(overflow.wide, [], `width ${width}`);
    assert.ok(overflow.doc <= overflow.view, `width ${width}: page ${overflow.doc} px wide in ${overflow.view}`);
    await ctx.close();
  }
});
