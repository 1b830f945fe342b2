// The breakdown as a chart (issue 12; web/chart.js's uPlot bar since issue 25): each term of the legend
// is a button with the term's size; choosing one draws that term's parts as a second bar and opens its
// row with the core's formula and this run's numbers. Pinned configurations are drawn as bars on one
// scale beside the compare table.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { start, waitForResult, gib, coreEstimate } from "./harness.mjs";

let h;
before(async () => { h = await start(); });
after(async () => { await h?.close(); });


const core = coreEstimate;

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
  await page.waitForSelector("#bar canvas");
  const labels = await page.$$eval("#bar .legend li[data-term]", (s) => s.map((el) => `${el.dataset.term}: ${el.querySelector(".val").textContent}`));
  assert.deepEqual(labels, terms.map((c) => `${c.name}: ${gib(c.bytes)}`));
  await page.waitForSelector("#table details .explain code", { state: "attached" });
  await page.click('#bar button[data-term="activations"]');
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
  assert.equal(await page.getAttribute('#bar button[data-term="activations"]', "aria-pressed"), "true");
  // A new answer keeps the chosen term open, with the new numbers.
  await page.fill('input[name="batch"]', "4");
  const before = parts[0];
  await page.waitForFunction((b) => document.querySelector('[data-testid="bar-detail"] .legend li')?.textContent !== b, before);
  const res4 = core({ model: "llama-3.2-1b", workload: { mode: "full", batch_size: 4, seq_len: 1024 }, gpu: "a100-80gb" });
  const acts4 = res4.breakdown.children[0].children.find((c) => c.name === "activations");
  assert.equal(await page.textContent('[data-testid="bar-detail"] .legend li'), `${acts4.children[0].name}: ${gib(acts4.children[0].bytes)}`);
  await ctx.close();
});

test("pinned configurations are drawn as bars on one scale, with the core's totals and cards", async () => {
  const ctx = await h.browser.newContext();
  const page = await ctx.newPage();
  await page.goto(h.base + "?model=llama-3.2-1b&mode=full&batch=1&seq=1024&gpu=a100-80gb");
  const first = await waitForResult(page);
  await page.click("#pin");
  await page.waitForSelector("#compare-chart canvas");
  await page.fill('input[name="batch"]', "8");
  await waitForResult(page, first.computed);
  await page.click("#pin");
  await page.waitForFunction(() => document.querySelectorAll("#compare-pins tr").length === 2 && document.querySelector("#compare-chart").plot?.data[0].length === 2);
  const one = core({ model: "llama-3.2-1b", workload: { mode: "full", batch_size: 1, seq_len: 1024 }, gpu: "a100-80gb" });
  const eight = core({ model: "llama-3.2-1b", workload: { mode: "full", batch_size: 8, seq_len: 1024 }, gpu: "a100-80gb" });
  const cells = await page.$$eval("#compare-pins tr", (trs) => trs.map((tr) => tr.cells[1].textContent));
  assert.deepEqual(cells, [`${gib(one.device_total_bytes)} fits`, `${gib(eight.device_total_bytes)} fits`]);
  // what the chart drew: the stack's top (uPlot's first series after x, the cumulative total) is each pin's
  // total, the last series each pin's card; one scale, from 0 past the larger of the totals and the card
  const drawn = await page.$eval("#compare-chart", (el) => ({ top: el.plot.data[1], card: el.plot.data.at(-1),
    min: el.plot.scales.y.min, max: el.plot.scales.y.max }));
  assert.deepEqual(drawn.top, [one.device_total_bytes, eight.device_total_bytes]);
  assert.deepEqual(drawn.card, [one.gpu.memory_bytes, eight.gpu.memory_bytes]);
  const scale = Math.max(one.device_total_bytes, eight.device_total_bytes, one.gpu.memory_bytes);
  assert.equal(drawn.min, 0);
  assert.ok(drawn.max >= scale && drawn.max <= scale * 1.1, `${drawn.max} for ${scale}`);
  await ctx.close();
});
