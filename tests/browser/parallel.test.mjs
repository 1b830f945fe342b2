// Multi-GPU layouts on the page (issue 9): the layout from a link gives the CLI's per-GPU answer,
// the page names the reported rank, and "How many GPUs?" answers with a sortable table of layouts.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { start, waitForResult, openPage } from "./harness.mjs";
import { ROOT } from "../pyodide/load.mjs";

let h;
before(async () => { h = await start(); });
after(async () => { await h?.close(); });

function cli(args) {
  const py = process.env.PYTHON || "python3";
  return JSON.parse(execFileSync(py, ["-m", "pycore", ...args, "--json"], { cwd: ROOT }).toString());
}

const open = (query) => openPage(h, query);

test("a pipeline and tensor layout from a link gives the CLI's per-GPU answer and names the rank", async () => {
  const { ctx, page, result } = await open("?model=llama-3.1-8b&seq=4096&recipe=fsdp2&tp=2&pp=4&rc=full&w=fp32&amp=bf16");
  const res = cli(["estimate", "--model", "llama-3.1-8b", "--seq", "4096", "--recipe", "fsdp2", "--tp", "2", "--pp", "4",
    "--recompute", "full", "--autocast", "bf16"]);
  assert.equal(result.peak, (res.device_total_bytes / 2 ** 30).toFixed(2));
  const line = await page.textContent("#layout-line");
  assert.match(line, /8 GPUs = data 1 × tensor 2 × pipeline 4/);
  assert.match(line, new RegExp(res.layout.most_loaded.description.replace(/[()]/g, "\\$&").slice(0, 30)));
  assert.equal(await page.inputValue('select[name="recipe"]'), "fsdp2");
  await ctx.close();
});

test("the layout controls come from the core's schema and hide for inference", async () => {
  const { ctx, page } = await open("?model=llama-3.2-1b");
  const recipes = await page.$$eval('select[name="recipe"] option', (os) => os.map((o) => o.value));
  assert.deepEqual(recipes.sort(), ["deepspeed", "deepspeed-estimator", "fsdp2", "hf", "megatron", "playbook", "zero-paper"]);
  await page.selectOption('select[name="mode"]', "inference");
  await page.waitForFunction(() => document.querySelector("#gpu-count").hidden);
  assert.equal(await page.isVisible('input[name="tp"]'), false);
  await ctx.close();
});

test("how many GPUs: a 7B full fine-tune needs two 80 GB cards, and a layout can be applied", async () => {
  const { ctx, page, result } = await open("?model=llama-2-7b&w=fp32&amp=bf16&gpu=a100-80gb&gb=64");
  assert.equal(result.verdict, "does-not-fit");
  await page.click("#plan");
  await page.waitForSelector('[data-testid="gpu-count"]', { timeout: 60000 });
  const plan = cli(["plan", "--model", "llama-2-7b", "--autocast", "bf16", "--gpu", "a100-80gb", "--global-batch", "64"]);
  assert.equal(await page.textContent('[data-testid="gpu-count"]'), `${plan.plan.gpus} GPUs`);
  const rows = await page.$$eval("#plan-table tbody tr", (trs) => trs.length);
  assert.equal(rows, Math.min(200, plan.plan.count));
  // the layouts as the page's chart (issue 25: the same component for the layout comparison): a bar per
  // layout in the core's order, a legend, the card's capacity, and a table from the same series whose
  // device totals are the CLI's
  await page.waitForSelector('[data-testid="plan-chart"] [data-testid="chart-legend"] li');
  const table = await page.$$eval("#plan-chart-table tr", (trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
  const shown = Math.min(12, plan.plan.layouts.length);
  assert.equal(table.length, 1 + shown);
  assert.ok(table.every((r) => r.length === table[0].length), "every row has as many cells as the header");
  assert.equal(table[0][1], "device total");
  const cliTotals = plan.plan.layouts.slice(0, shown).map((r) => `${(r.device_total_bytes / 2 ** 30).toFixed(2)} GiB`);
  assert.deepEqual(table.slice(1).map((r) => r[1]), cliTotals);
  assert.equal(await page.getAttribute('[data-testid="plan-chart"] figure', "data-capacity-bytes"),
    String(plan.plan.layouts[0].device_total_bytes + plan.plan.layouts[0].headroom_bytes));
  // sort by per-GPU memory, ascending: the first row is the smallest
  await page.click("#plan-table th:nth-child(9) button");
  await page.click("#plan-table th:nth-child(9) button");
  const first = await page.textContent("#plan-table tbody tr:first-child td:nth-child(9)");
  const all = await page.$$eval("#plan-table tbody tr td:nth-child(9)", (tds) => tds.map((td) => parseFloat(td.textContent)));
  assert.equal(parseFloat(first), Math.min(...all));
  await page.click("#plan-table tbody tr:first-child button");
  const applied = await waitForResult(page, result.computed);
  assert.match(page.url(), /(dp|tp|pp|cp)=2/);
  assert.notEqual(applied.peak, result.peak);
  await ctx.close();
});
