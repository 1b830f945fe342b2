// The page in Debian's Chromium (playwright-core): results, links, config.json, bad URLs,
// offline use, no third-party requests, and parity with the CLI.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { start, waitForResult } from "./harness.mjs";
import { ROOT } from "../pyodide/load.mjs";

let h;
before(async () => { h = await start(); });
after(async () => { await h?.close(); });

async function open(query = "", context = null) {
  const ctx = context || await h.browser.newContext();
  const page = await ctx.newPage();
  const outside = [];
  page.on("request", (r) => { if (!r.url().startsWith(h.base) && !r.url().startsWith("data:")) outside.push(r.url()); });
  await page.goto(h.base + query);
  const result = await waitForResult(page);
  return { ctx, page, result, outside };
}

function cliPeakGiB(args) {
  const py = process.env.PYTHON || "python3";
  const out = JSON.parse(execFileSync(py, ["-m", "pycore", "estimate", ...args, "--json"], { cwd: ROOT }).toString());
  return out;
}

test("load shows a result and a verdict", async () => {
  const { ctx, result } = await open();
  assert.match(result.peak, /^\d+\.\d\d$/);
  assert.ok(["fits", "at-risk", "does-not-fit"].includes(result.verdict));
  await ctx.close();
});

test("the page's peak equals the CLI's --json peak for the same configuration", async () => {
  const { ctx, page, result } = await open("?model=qwen2.5-7b&mode=lora&batch=8&seq=2048&ckpt=1&gpu=a100-80gb");
  const cli = cliPeakGiB(["--model", "qwen2.5-7b", "--mode", "lora", "--batch", "8", "--seq", "2048", "--checkpointing", "--gpu", "a100-80gb"]);
  assert.equal(result.peak, (cli.device_total_bytes / 2 ** 30).toFixed(2));
  // the verdict and its error band are the core's
  assert.equal(result.verdict, cli.verdict.replace(/ /g, "-"));
  assert.equal(await page.textContent('[data-testid="band"]'), cli.error_band.basis);
  assert.equal(result.verdict, cli.fits ? "fits" : "does-not-fit");
  await ctx.close();
});

test("changing an input updates the result and the URL", async () => {
  const { ctx, page, result } = await open("?model=llama-3.2-1b");
  await page.fill('input[name="batch"]', "16");
  const next = await waitForResult(page, result.computed);
  assert.notEqual(next.peak, result.peak);
  assert.match(page.url(), /batch=16/);
  await ctx.close();
});

test("opening a shared link restores the same state and result", async () => {
  const query = "?model=mistral-7b&mode=inference&batch=4&seq=4096&new=256&w=int4&gpu=rtx-4090-24gb";
  const a = await open(query);
  const b = await open(query);
  assert.equal(a.result.peak, b.result.peak);
  assert.equal(await b.page.inputValue('select[name="mode"]'), "inference");
  assert.equal(await b.page.inputValue('input[name="new"]'), "256");
  assert.equal(await b.page.inputValue('select[name="w"]'), "int4");
  assert.equal(await b.page.inputValue('select[name="gpu"]'), "rtx-4090-24gb");
  await a.ctx.close(); await b.ctx.close();
});

test("back and forward restore earlier states", async () => {
  const { ctx, page, result } = await open("?model=gpt2&w=fp32");
  await page.fill('input[name="seq"]', "512");
  const second = await waitForResult(page, result.computed);
  await page.goBack();
  const back = await waitForResult(page, second.computed);
  assert.equal(back.peak, result.peak);
  assert.equal(await page.inputValue('input[name="seq"]'), "2048");
  await ctx.close();
});

test("a pasted config.json is estimated and compressed into the URL", async () => {
  const { ctx, page, result } = await open();
  const cfg = { model_type: "qwen2", hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24, num_attention_heads: 14,
    num_key_value_heads: 2, vocab_size: 151936, tie_word_embeddings: true };
  await page.check('input[name="source"][value="config"]');
  await page.fill("#config-text", JSON.stringify(cfg));
  await page.waitForFunction(() => (document.body.dataset.query || "").includes("cfg="), null, { timeout: 60000 });
  const next = await page.evaluate(() => ({ peak: document.querySelector('[data-testid="peak"]').textContent }));
  assert.match(page.url(), /cfg=/);
  assert.notEqual(next.peak, result.peak);                 // a 0.5B model, not the default 8B
  const again = await open("?" + new URL(page.url()).search.slice(1));
  assert.equal(again.result.peak, next.peak);
  await ctx.close(); await again.ctx.close();
});

test("a bad or hostile URL value gets a message naming it and falls back to the default", async () => {
  const { ctx, page, result } = await open("?batch=-4&model=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E&mode=hack");
  const messages = await page.textContent("#messages");
  assert.match(messages, /“batch”/);
  assert.match(messages, /“model”/);
  assert.match(messages, /“mode”/);
  assert.equal(await page.locator("#messages img").count(), 0);   // rendered as text, never as markup
  assert.equal(await page.inputValue('input[name="batch"]'), "1");
  assert.match(result.peak, /^\d+\.\d\d$/);
  await ctx.close();
});

test("no request leaves the origin", async () => {
  const { ctx, page, outside } = await open("?model=gemma-2-2b&mode=qlora");
  await page.click("#table details summary");
  assert.deepEqual(outside, []);
  await ctx.close();
});

test("with the network off, a reload still computes (service worker)", async () => {
  const ctx = await h.browser.newContext();
  const { page } = await open("?model=llama-3.2-3b", ctx);
  await page.evaluate(async () => { await navigator.serviceWorker.ready; });
  await page.reload();                                   // now controlled by the worker
  await waitForResult(page);
  await ctx.setOffline(true);
  await page.reload();
  const r = await waitForResult(page);
  assert.match(r.peak, /^\d+\.\d\d$/);
  await ctx.close();
});

test("pinned configurations are compared side by side and kept in the URL", async () => {
  const { ctx, page } = await open("?model=llama-3.2-1b");
  await page.click("#pin");
  await page.waitForSelector("#compare table");
  await page.fill('input[name="batch"]', "4");
  await page.click("#pin");
  await page.waitForFunction(() => document.querySelectorAll("#compare-pins tr").length === 2);
  assert.equal(new URL(page.url()).searchParams.getAll("pin").length, 2);
  const b = await open(new URL(page.url()).search);
  await b.page.waitForFunction(() => document.querySelectorAll("#compare-pins tr").length === 2);
  await ctx.close(); await b.ctx.close();
});

test("each term links to its Method section, and a docs page works offline once visited", async () => {
  const ctx = await h.browser.newContext();
  const { page } = await open("?model=llama-3.2-1b&mode=lora", ctx);
  await page.waitForSelector("#table details .explain a", { state: "attached" });
  const href = await page.getAttribute("#table details .explain a", "href");
  assert.match(href, /^docs\/method\/#[a-z-]+$/);
  await page.evaluate(async () => { await navigator.serviceWorker.ready; });
  await page.reload();
  await waitForResult(page);
  // the docs' pages, styles and scripts are precached (issue 25: they work offline unvisited); their
  // fonts and search index are not (they are cached on the first visit to a docs page)
  const precached = await page.evaluate(async () => (await (await caches.open((await caches.keys()).find((k) => /^gmp-[0-9a-f]+$/.test(k)))).keys()).map((r) => r.url));
  assert.ok(precached.some((u) => u.endsWith("/docs/method/")), "the docs' pages are in the precache");
  assert.ok(!precached.some((u) => /\/docs\/(webfonts|search)\//.test(u)), "fonts and the search index are not");
  // nor the icon stylesheets, which draw nothing without those fonts (22 KB of a first visit, issue 25)
  assert.ok(precached.some((u) => /\/docs\/css\/bootstrap\.min\.css$/.test(u)), "the docs' own styles are");
  assert.ok(!precached.some((u) => /\/docs\/css\/(fontawesome|brands|solid)/.test(u)), "the icon styles are not");
  await page.goto(h.base + href);
  await page.waitForLoadState("load");
  await ctx.setOffline(true);
  await page.goto(h.base + href);
  const id = href.split("#")[1];
  assert.equal(await page.locator(`[id="${id}"]`).count(), 1);
  await ctx.close();
});

test("data parallelism and ZeRO from the URL give the CLI's per-GPU peak", async () => {
  const { ctx, page, result } = await open("?model=llama-3.1-70b&dp=8&zero=3&ckpt=1");
  const cli = cliPeakGiB(["--model", "llama-3.1-70b", "--dp", "8", "--zero", "3", "--checkpointing"]);
  assert.equal(result.peak, (cli.device_total_bytes / 2 ** 30).toFixed(2));
  assert.equal(await page.inputValue('select[name="zero"]'), "3");
  await ctx.close();
});
