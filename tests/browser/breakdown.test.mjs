// The breakdown as a chart (issue 12): each bar segment is a labelled button; choosing one draws that
// term's parts as a second bar and opens its row with the core's formula and this run's numbers.
// Pinned configurations are drawn as bars on one scale beside the compare table.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { start, waitForResult } from "./harness.mjs";
import { ROOT } from "../pyodide/load.mjs";

let h;
before(async () => { h = await start(); });
after(async () => { await h?.close(); });

const GiB = 2 ** 30;
const gib = (b) => `${(b / GiB).toFixed(2)} GiB`;

function core(req) {
  const py = process.env.PYTHON || "python3";
  const out = execFileSync(py, ["-c", "import sys; from pycore.api import estimate; print(estimate(sys.argv[1]))",
    JSON.stringify(req)], { cwd: ROOT }).toString();
  return JSON.parse(out).result;
}

test("choosing a bar segment shows that term's parts and opens its formula, with the core's numbers", async () => {
  const ctx = await h.browser.newContext();
  const page = await ctx.newPage();
  await page.goto(h.base + "?model=llama-3.2-1b&mode=full&batch=2&seq=1024&gpu=a100-80gb");
  await waitForResult(page);
  const res = core({ model: "llama-3.2-1b", workload: { mode: "full", batch_size: 2, seq_len: 1024 }, gpu: "a100-80gb", solve: true });
  const allocated = res.breakdown.children[0];
  assert.equal(allocated.name, "allocated at peak");
  const acts = allocated.children.find((c) => c.name === "activations");
  assert.ok(acts && acts.children.length > 1, "the core splits activations into parts");
  // Every term of the device total is one labelled segment, in the core's order.
  const terms = [...allocated.children, ...res.breakdown.children.slice(1)].filter((c) => c.bytes > 0);
  const labels = await page.$$eval("#bar .seg", (s) => s.map((el) => el.getAttribute("aria-label")));
  assert.deepEqual(labels, terms.map((c) => `${c.name}: ${gib(c.bytes)}`));
  await page.waitForSelector("#table details .explain code", { state: "attached" });
  await page.click('#bar .seg[data-term="activations"]');
  await page.waitForSelector('[data-testid="bar-detail"]:not([hidden]) .sub-bar');
  const parts = await page.$$eval('[data-testid="bar-detail"] .legend li', (li) => li.map((el) => el.textContent));
  assert.deepEqual(parts, acts.children.filter((c) => c.bytes > 0).map((c) => `${c.name}: ${gib(c.bytes)}`));
  // The parts bar fills its width: its segments' shares add up to the whole term.
  const widths = await page.$$eval('[data-testid="bar-detail"] .seg', (s) => s.map((el) => parseFloat(el.style.width)));
  assert.ok(Math.abs(widths.reduce((a, b) => a + b, 0) - 100) < 0.01, `parts sum to ${widths}`);
  // each legend swatch has its segment's colour
  const colours = await page.$eval('[data-testid="bar-detail"]', (box) => ({
    segs: [...box.querySelectorAll(".seg")].map((el) => el.style.background),
    swatches: [...box.querySelectorAll(".legend .swatch")].map((el) => el.style.background) }));
  assert.deepEqual(colours.swatches, colours.segs);
  const open = await page.$eval('#table details[data-term="activations"]', (d) => ({ open: d.open, text: d.textContent }));
  assert.ok(open.open, "the term's row is opened");
  assert.ok(open.text.includes(res.explanations.activations.formula), "the formula is the core's");
  assert.ok(open.text.includes(res.explanations.activations.numbers), "with this run's numbers");
  assert.equal(await page.getAttribute('#bar .seg[data-term="activations"]', "aria-pressed"), "true");
  // A new answer keeps the chosen term open, with the new numbers.
  await page.fill('input[name="batch"]', "4");
  const before = parts[0];
  await page.waitForFunction((b) => document.querySelector('[data-testid="bar-detail"] .legend li')?.textContent !== b, before);
  const res4 = core({ model: "llama-3.2-1b", workload: { mode: "full", batch_size: 4, seq_len: 1024 }, gpu: "a100-80gb" });
  const acts4 = res4.breakdown.children[0].children.find((c) => c.name === "activations");
  assert.equal(await page.textContent('[data-testid="bar-detail"] .legend li'), `${acts4.children[0].name}: ${gib(acts4.children[0].bytes)}`);
  await ctx.close();
});

test("pinned configurations are drawn as bars on one scale, with the core's totals", async () => {
  const ctx = await h.browser.newContext();
  const page = await ctx.newPage();
  await page.goto(h.base + "?model=llama-3.2-1b&mode=full&batch=1&seq=1024&gpu=a100-80gb");
  const first = await waitForResult(page);
  await page.click("#pin");
  await page.waitForSelector('[data-testid="pin-bar"]');
  await page.fill('input[name="batch"]', "8");
  await waitForResult(page, first.computed);
  await page.click("#pin");
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="pin-bar"]').length === 2);
  const one = core({ model: "llama-3.2-1b", workload: { mode: "full", batch_size: 1, seq_len: 1024 }, gpu: "a100-80gb" });
  const eight = core({ model: "llama-3.2-1b", workload: { mode: "full", batch_size: 8, seq_len: 1024 }, gpu: "a100-80gb" });
  const bars = await page.$$eval('[data-testid="pin-bar"]', (figs) => figs.map((f) => ({
    caption: f.querySelector("figcaption").textContent,
    filled: [...f.querySelectorAll(".seg")].reduce((a, el) => a + parseFloat(el.style.width), 0),
    limit: parseFloat(f.querySelector(".limit").style.left) })));
  assert.ok(bars[0].caption.endsWith(`: ${gib(one.device_total_bytes)}`), bars[0].caption);
  assert.ok(bars[1].caption.endsWith(`: ${gib(eight.device_total_bytes)}`), bars[1].caption);
  // One scale: the larger of the totals and the card (80 GiB here), so each bar's filled share is its total over it.
  const scale = Math.max(one.device_total_bytes, eight.device_total_bytes, one.gpu.memory_bytes);
  assert.ok(Math.abs(bars[0].filled - 100 * one.device_total_bytes / scale) < 0.05, `${bars[0].filled}`);
  assert.ok(Math.abs(bars[1].filled - 100 * eight.device_total_bytes / scale) < 0.05, `${bars[1].filled}`);
  assert.ok(bars[1].filled > bars[0].filled);
  assert.ok(Math.abs(bars[0].limit - 100 * one.gpu.memory_bytes / scale) < 0.01);
  await ctx.close();
});
