// Issue 25: the page as a new user meets it, one test per point of the issue. Expected figures come
// from the core run here through Python (pycore.api.estimate), not from the page's own code.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { start, waitForResult, gib, coreEstimate, openPage } from "./harness.mjs";

let h;
before(async () => { h = await start(); });
after(async () => { await h?.close(); });

const core = coreEstimate;
const open = (query, options = {}) => openPage(h, query, options);

test("point 1: the sweep's columns are every term across the points, each row as long as the header, a legend, the out-of-memory point named", async () => {
  const { ctx, page } = await open("?mode=lora&seq=4096&ckpt=1&gpu=rtx-4090-24gb");
  await page.selectOption("#sweep-field", "seq_len");
  await page.click("#sweep-run");
  await page.waitForSelector("#sweep-rows", { state: "attached" });
  const sw = core({ model: "llama-3.1-8b", workload: { mode: "lora", seq_len: 4096, gradient_checkpointing: true },
    gpu: "rtx-4090-24gb", sweep: { field: "seq_len" } }).sweep;
  // the terms differ along this sweep: activations and logits appear only at longer sequences
  const union = [...new Set(sw.points.flatMap((p) => p.terms.map((t) => t.name)))];
  assert.ok(union.length > sw.points[0].terms.length, "the peak moves between phases along this sweep");
  const table = await page.$eval("#sweep-rows", (t) => ({ head: [...t.tHead.rows[0].cells].map((c) => c.textContent),
    rows: [...t.tBodies[0].rows].map((r) => [...r.cells].map((c) => c.textContent)) }));
  // value, device total, every term, the card's memory
  assert.deepEqual([...table.head.slice(2, -1)].sort(), [...union].sort());
  assert.equal(table.head.at(-1), "GPU memory");
  for (const row of table.rows) assert.equal(row.length, table.head.length, `row ${row[0]}`);
  for (const [i, p] of sw.points.entries()) {
    for (const [k, name] of table.head.entries()) {
      if (k < 2 || k === table.head.length - 1) continue;
      const t = p.terms.find((x) => x.name === name);
      assert.equal(table.rows[i][k], gib(t ? t.bytes : 0), `${name} at ${p.value}`);
    }
  }
  const legend = await page.$$eval('[data-testid="sweep-chart"] .legend li[data-term]', (lis) => lis.map((li) => li.dataset.term));
  assert.deepEqual(legend, table.head.slice(2, -1));
  // the axes are uPlot's (it sizes them to their labels); the out-of-memory point is named beside the chart
  assert.match(await page.textContent('[data-testid="sweep-chart"] [data-testid="chart-note"]'), new RegExp(`out of memory from ${sw.oom_at}\\.`));
  await ctx.close();
});

test("point 2: at 390 px the summary stays in view while the form is edited, and the GPU count does not widen the page", async () => {
  const { ctx, page } = await open("?model=llama-3.1-8b&mode=full&gpu=a100-80gb", { viewport: { width: 390, height: 844 } });
  const inView = () => page.$eval('[data-testid="summary"]', (s) => { const r = s.getBoundingClientRect();
    return { top: r.top, bottom: r.bottom, text: s.textContent, scroll: scrollY }; });
  await page.locator('select[name="recipe"]').scrollIntoViewIfNeeded();
  const deep = await inView();
  assert.ok(deep.scroll > 1000, `scrolled ${deep.scroll}`);
  assert.ok(deep.top >= 0 && deep.bottom <= 844, JSON.stringify(deep));
  assert.match(deep.text, /(fits|at risk|does not fit)/);
  assert.match(deep.text, /GiB/);
  await page.click("#plan");
  await page.waitForSelector('[data-testid="plan-recommended"]');
  const width = await page.evaluate(() => ({ doc: document.documentElement.scrollWidth, view: innerWidth }));
  assert.ok(width.doc <= width.view, `the page is ${width.doc} px wide in ${width.view}`);
  await ctx.close();
  const wide = await open("?model=llama-3.1-8b&mode=full&gpu=a100-80gb", { viewport: { width: 1280, height: 800 } });
  await wide.page.locator("#check-run").scrollIntoViewIfNeeded();
  const r = await wide.page.$eval('[data-testid="summary"]', (s) => s.getBoundingClientRect().toJSON());
  assert.ok(r.top >= 0 && r.bottom <= 800, JSON.stringify(r));
  await wide.ctx.close();
});

test("point 3: the model search lists matches to pick from, in any word order; no match keeps the model; the GPUs are searchable; a GPU count", async () => {
  const { ctx, page, result } = await open("?model=llama-3.2-1b&mode=lora");
  await page.fill("#model-search", "70b");
  await page.waitForSelector("#model-results button");
  assert.equal(await page.inputValue("#model"), "llama-3.2-1b");          // nothing picked by typing
  assert.doesNotMatch(page.url(), /model=(?!llama-3\.2-1b)/);
  await page.fill("#model-search", "zzz");
  assert.match(await page.textContent("#model-results-note"), /No match/);
  assert.equal(await page.$$eval("#model-results button", (b) => b.length), 0);
  assert.equal(await page.inputValue("#model"), "llama-3.2-1b");
  assert.equal(await page.textContent('[data-testid="peak"]'), result.peak);
  await page.fill("#model-search", "llama 3.1 70");
  const found = await page.$$eval("#model-results button", (bs) => bs.map((b) => b.dataset.value));
  assert.ok(found.includes("llama-3.1-70b"), found.join(", "));
  await page.click('#model-results button[data-value="llama-3.1-70b"]');
  await waitForResult(page, result.computed);
  assert.match(page.url(), /model=llama-3\.1-70b/);
  await page.fill("#gpu-search", "4090");
  await page.click('#gpu-results button[data-value="rtx-4090-24gb"]');
  await page.waitForFunction(() => /gpu=rtx-4090-24gb/.test(location.search));
  assert.equal(await page.inputValue("#gpu"), "rtx-4090-24gb");
  const before = await page.evaluate(() => document.body.dataset.computed);
  await page.fill('[data-testid="gpu-n"]', "4");
  await waitForResult(page, before);
  assert.match(page.url(), /[?&]dp=4(&|$)/);
  assert.equal(await page.inputValue('input[name="dp"]'), "4");
  // the answer for the GPU picked above may land first: wait for the one for 4 GPUs
  await page.waitForFunction(() => /^4 GPUs/.test(document.querySelector("#layout-line").textContent), null,
    { timeout: 30000 });
  assert.match(await page.textContent("#layout-line"), /^4 GPUs/);
  await ctx.close();
});

// Qwen/Qwen2.5-14B-Instruct's published config.json (the fields the estimate reads), served by a mocked Hub
const config = { architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", hidden_size: 5120, intermediate_size: 13824,
  num_hidden_layers: 48, num_attention_heads: 40, num_key_value_heads: 8, vocab_size: 152064, tie_word_embeddings: false,
  max_position_embeddings: 32768, torch_dtype: "bfloat16" };

test("point 4: a Hub URL is taken as the model id", async () => {
  const ctx = await h.browser.newContext();
  const seen = [];
  await ctx.route("https://huggingface.co/**", (route) => { seen.push(route.request().url());
    return route.fulfill({ status: 200, contentType: "application/json", headers: { "access-control-allow-origin": "*" }, body: JSON.stringify(config) }); });
  const page = await ctx.newPage();
  await page.goto(h.base + "?mode=lora");
  const first = await waitForResult(page);
  await page.check('input[name="source"][value="config"]');
  await page.fill("#hub-id", "https://huggingface.co/Qwen/Qwen2.5-14B-Instruct");
  await page.click("#hub-fetch");
  // choosing the config source recomputes too: wait for the fetch's own answer, not any new result
  await page.waitForFunction(() => /^Fetched/.test(document.querySelector("#hub-status").textContent), null,
    { timeout: 30000 });
  await waitForResult(page, first.computed);
  assert.deepEqual(seen, ["https://huggingface.co/Qwen/Qwen2.5-14B-Instruct/resolve/main/config.json"]);
  assert.match(await page.textContent("#hub-status"), /^Fetched Qwen\/Qwen2\.5-14B-Instruct\/config\.json/);
  assert.match(page.url(), /hub=Qwen%2FQwen2\.5-14B-Instruct|hub=Qwen\/Qwen2\.5-14B-Instruct/);
  await ctx.close();
});

test("point 5: words, not keys: the verdict, no batch fits, one request, fp32 master weights, engine flags, the longest context, launch commands", async () => {
  const big = await open("?model=llama-3.1-70b&mode=lora&gpu=rtx-4090-24gb");
  assert.equal(big.result.verdictText, "does not fit");
  await big.page.waitForFunction(() => /fits/.test(document.querySelector("#solver").textContent));
  const solver = await big.page.textContent("#solver");
  assert.doesNotMatch(solver, /fits: 0\b/);
  assert.match(solver, /No batch size fits/);
  await big.ctx.close();

  const amp = await open("?model=llama-3.2-1b&mode=lora&amp=bf16");
  assert.match(await amp.page.textContent('[data-testid="w-note"]'), /fp32 master weights/);
  const run = core({ model: "llama-3.2-1b", workload: { mode: "lora" }, precision: { autocast: "bf16", weights: "fp32" } }).run_arguments;
  const launch = await amp.page.textContent('[data-testid="launch-text"]');
  assert.match(launch, new RegExp(`TrainingArguments\\(per_device_train_batch_size=${run.training_arguments.per_device_train_batch_size}`));
  assert.ok(launch.includes(run.launch), launch);
  await amp.ctx.close();

  const llama = await open("?model=llama-3.1-8b&mode=serve&engine=llamacpp&gpu=rtx-4090-24gb");
  const c = core({ model: "llama-3.1-8b", workload: { mode: "serve", engine: "llamacpp" }, gpu: "rtx-4090-24gb" });
  assert.equal(c.max_concurrency, 1);
  assert.match(await llama.page.textContent("#serve-line"), / 1 request of /);
  const label = (name) => llama.page.$eval(`[name="${name}"]`, (el) => el.closest("label").textContent);
  assert.match(await label("n_gpu_layers"), /-ngl\b/);
  assert.match(await label("n_ctx"), /(^|\s)-c\s/);
  assert.equal(await llama.page.textContent('[data-testid="launch-text"]'), c.launch_command);
  await llama.ctx.close();

  const vllm = await open("?model=llama-3.1-8b&mode=serve&engine=vllm&gpu=rtx-4090-24gb");
  assert.match(await vllm.page.$eval('[name="max_model_len"]', (el) => el.closest("label").textContent), /--max-model-len/);
  const solved = core({ model: "llama-3.1-8b", workload: { mode: "serve", engine: "vllm" }, gpu: "rtx-4090-24gb", solve: true });
  await vllm.page.waitForFunction(() => document.querySelector('[data-testid="serve-longest"]').textContent);
  assert.equal(await vllm.page.textContent('[data-testid="serve-longest"]'),
    `Longest context that fits for 1 request at once: ${solved.solutions.longest_context_for_requests.toLocaleString("en")} tokens.`);
  assert.equal(await vllm.page.textContent('[data-testid="launch-text"]'), solved.launch_command);
  await vllm.ctx.close();
});

test("point 6: the check reads both figures of a one-line paste and 'N GiB allocated, M GiB reserved'; a small measurement's gap is not a huge percentage", async () => {
  const { ctx, page } = await open("?model=llama-3.1-8b&mode=lora&gpu=a100-80gb");
  const measured = async (paste) => {
    await page.fill("#measured-text", paste);
    await page.evaluate(() => { document.querySelector("#check-answer").replaceChildren(); });
    await page.click("#check-run");
    await page.waitForSelector("#check-table");
    return page.$$eval("#check-table tbody tr", (trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
  };
  // 21.3 GiB and 22.9 GiB, shown to two decimals
  for (const paste of ["21.3 GiB allocated, 22.9 GiB reserved", "max_memory_allocated: 21.3 GiB, max_memory_reserved: 22.9 GiB"]) {
    const rows = await measured(paste);
    const values = rows.map((r) => r[1]);
    assert.ok(values.includes("21.30 GiB") && values.includes("22.90 GiB"), `${paste}: ${JSON.stringify(rows)}`);
  }
  const small = await measured("max_memory_allocated: 1.0 GiB");
  for (const r of small) assert.doesNotMatch(r[3], /\d{3,}\.\d%/, JSON.stringify(r));
  assert.match(small[0][3], /^−\d+\.\d\d GiB \(the estimate is \d+\.\d× the measurement\)$/);
  await ctx.close();
});

test("point 7: compared pins say what differs, with a term-by-term difference", async () => {
  const { ctx, page, result } = await open("?model=llama-3.2-1b&mode=full&batch=4&seq=2048&gpu=a100-80gb");
  await page.click("#pin");
  await page.waitForSelector("#compare-chart canvas");
  await page.check('input[name="ckpt"]');
  await waitForResult(page, result.computed);
  await page.click("#pin");
  // the difference columns come with the second pin
  await page.waitForFunction(() => document.querySelector('[data-testid="compare-diff"]')?.tHead.rows[0].cells.length === 4);
  const captions = await page.$$eval("#compare-pins tr td:first-child", (f) => f.map((x) => x.textContent));
  assert.equal(captions.length, 2);
  assert.notEqual(captions[0].slice(3), captions[1].slice(3));
  assert.match(captions[0], /Gradient checkpointing off/);
  assert.match(captions[1], /Gradient checkpointing on/);
  const off = core({ model: "llama-3.2-1b", workload: { mode: "full", batch_size: 4, seq_len: 2048 }, gpu: "a100-80gb" });
  const on = core({ model: "llama-3.2-1b", workload: { mode: "full", batch_size: 4, seq_len: 2048, gradient_checkpointing: true }, gpu: "a100-80gb" });
  const rows = await page.$$eval('[data-testid="compare-diff"] tbody tr', (trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
  const total = rows.find((r) => r[0] === "device total");
  const d = on.device_total_bytes - off.device_total_bytes;
  assert.equal(total[3], `${d > 0 ? "+" : "−"}${gib(Math.abs(d))}`);
  const act = rows.find((r) => r[0] === "activations");
  assert.ok(act && act[3].startsWith("−"), JSON.stringify(rows));
  await ctx.close();
});

test("point 8: after Apply the focus is on the new verdict; only a small status region is live; a skip link comes first", async () => {
  const { ctx, page, result } = await open("?model=llama-3.1-8b&mode=full&batch=8&seq=4096&gpu=rtx-4090-24gb");
  assert.equal(await page.$eval("#results", (r) => r.getAttribute("aria-live")), null);
  const live = await page.$$eval("[aria-live]", (els) => els.map((e) => ({ id: e.id, n: e.textContent.length })));
  for (const l of live) assert.ok(l.n < 200, `${l.id} is live with ${l.n} characters`);
  assert.match(await page.textContent('[data-testid="live"]'), /GiB/);
  await page.keyboard.press("Tab");
  assert.deepEqual(await page.evaluate(() => [document.activeElement.tagName, document.activeElement.getAttribute("href")]), ["A", "#answer"]);
  await page.waitForSelector('[data-testid="fit-plan"] button');
  await page.click('[data-testid="fit-plan"] button');
  await waitForResult(page, result.computed);
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === "verdict");
  const r = await page.$eval("#verdict", (v) => v.getBoundingClientRect().toJSON());
  assert.ok(r.top >= 0 && r.bottom <= 720 + 1, JSON.stringify(r));
  await ctx.close();
});

test("point 9: the GPU-count table highlights the recommended layout with its own Use, one row per distinct layout", async () => {
  const { ctx, page } = await open("?model=llama-3.1-8b&mode=full&gpu=a100-80gb");
  await page.click("#plan");
  await page.waitForSelector('[data-testid="plan-recommended"]');
  const plan = core({ model: "llama-3.1-8b", workload: { mode: "full" }, gpu: "a100-80gb", plan: {} }).plan;
  const rows = await page.$$eval("#plan-table tbody tr", (trs) => trs.map((tr) => ({ rec: tr.classList.contains("recommended"),
    cells: [...tr.children].slice(0, -1).map((c) => c.textContent).join("|"), use: tr.querySelector("button")?.textContent })));
  assert.equal(rows.filter((r) => r.rec).length, 1);
  assert.ok(rows[0].rec, "the recommended layout is the first row");
  assert.equal(rows[0].use, "Use (recommended)");
  assert.equal(new Set(rows.map((r) => r.cells)).size, rows.length, "no two rows alike");
  const d = plan.recommended.degrees;
  assert.match(rows[0].cells, new RegExp(`^${d.data}\\|${d.tensor}\\|${d.pipeline}\\|${d.context}\\|${d.expert}\\|${plan.recommended.zero_stage}\\|`));
  const before = await page.evaluate(() => document.body.dataset.computed);
  await page.click('[data-testid="use-recommended"]');
  await waitForResult(page, before);
  assert.equal(await page.inputValue('input[name="dp"]'), String(d.data));
  assert.equal(await page.inputValue('select[name="zero"]'), String(plan.recommended.zero_stage));
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === "verdict");
  await ctx.close();
});

test("point 10: docs pages never visited work offline, the accuracy page's contents have no stray heading, no CSP errors on docs pages", async () => {
  const ctx = await h.browser.newContext();
  const page = await ctx.newPage();
  const csp = [];
  page.on("console", (m) => { if (/Content Security Policy/i.test(m.text())) csp.push(`${page.url()}: ${m.text()}`); });
  await page.goto(h.base + "?model=llama-3.2-1b");
  await waitForResult(page);
  await page.evaluate(async () => { await navigator.serviceWorker.ready; });
  await page.waitForFunction(async () => { const k = (await caches.keys()).find((n) => /^gmp-[0-9a-f]+$/.test(n));
    return k && (await (await caches.open(k)).match("docs/faq/")) !== undefined; }, null, { timeout: 60000 });
  for (const path of ["docs/accuracy/", "docs/method/"]) {
    await page.goto(h.base + path);
    await page.waitForLoadState("load");
  }
  const toc = await page.goto(h.base + "docs/accuracy/").then(() => page.$$eval(".navbar, .bs-sidebar, nav a, .toc a", (as) => as.map((a) => a.textContent)));
  assert.ok(!toc.some((t) => /5099/.test(t)), toc.filter((t) => /5099/.test(t)).join(" / "));
  assert.equal(await page.$$eval("h1, h2, h3", (hs) => hs.filter((x) => /^#?5099/.test(x.textContent.trim())).length), 0);
  assert.deepEqual(csp, []);
  await ctx.setOffline(true);
  for (const path of ["docs/faq/", "docs/serving/", "docs/"]) {
    const res = await page.goto(h.base + path);
    assert.ok(res && res.ok(), `${path} offline`);
    assert.ok((await page.$$eval("h1", (x) => x.length)) >= 1, `${path} has its heading offline`);
  }
  await ctx.close();
});

test("Hub search: on the button only, the Hub's model search lists ids to pick, and a pick fetches its config.json", async () => {
  const ctx = await h.browser.newContext();
  const seen = [];
  await ctx.route("https://huggingface.co/**", (route) => {
    const url = route.request().url();
    seen.push(url);
    const body = url.includes("/api/models?") ? [{ id: "Qwen/Qwen2.5-14B-Instruct" }, { id: "Qwen/Qwen2.5-14B" }, { modelId: "not an id" }] : config;
    return route.fulfill({ status: 200, contentType: "application/json", headers: { "access-control-allow-origin": "*" }, body: JSON.stringify(body) });
  });
  const page = await ctx.newPage();
  await page.goto(h.base + "?mode=lora");
  const first = await waitForResult(page);
  await page.check('input[name="source"][value="config"]');
  await page.fill("#hub-id", "qwen2.5 14b");
  assert.deepEqual(seen, []);                                        // nothing sent on typing
  await page.click("#hub-search");
  await page.waitForSelector('[data-testid="hub-results"] button');
  assert.equal(seen.length, 1);
  const u = new URL(seen[0]);
  assert.equal(`${u.origin}${u.pathname}`, "https://huggingface.co/api/models");
  assert.equal(u.searchParams.get("search"), "qwen2.5 14b");
  assert.deepEqual(await page.$$eval('[data-testid="hub-results"] button', (b) => b.map((x) => x.textContent)),
    ["Qwen/Qwen2.5-14B-Instruct", "Qwen/Qwen2.5-14B"]);
  await page.click('[data-testid="hub-results"] button[data-value="Qwen/Qwen2.5-14B-Instruct"]');
  await page.waitForFunction(() => /^Fetched/.test(document.querySelector("#hub-status").textContent), null,
    { timeout: 30000 });
  await waitForResult(page, first.computed);
  assert.equal(seen[1], "https://huggingface.co/Qwen/Qwen2.5-14B-Instruct/resolve/main/config.json");
  await ctx.close();
});

test("the sweep's axis and last value are kept in the link, and a link with them draws the sweep", async () => {
  const { ctx, page } = await open("?mode=lora&seq=4096&gpu=rtx-4090-24gb");
  await page.selectOption("#sweep-field", "seq_len");
  await page.fill("#sweep-stop", "8192");
  await page.click("#sweep-run");
  await page.waitForSelector("#sweep-rows", { state: "attached" });
  const url = new URL(page.url());
  assert.equal(url.searchParams.get("sweep"), "seq_len");
  assert.equal(url.searchParams.get("sweep_to"), "8192");
  const again = await open(url.search);
  await again.page.waitForSelector("#sweep-rows", { state: "attached" });
  const sw = core({ model: "llama-3.1-8b", workload: { mode: "lora", seq_len: 4096 }, gpu: "rtx-4090-24gb",
    sweep: { field: "seq_len", stop: 8192 } }).sweep;
  const values = await again.page.$$eval("#sweep-rows tbody tr", (trs) => trs.map((tr) => Number(tr.cells[0].textContent)));
  assert.deepEqual(values, sw.points.filter((p) => !p.error).map((p) => p.value));
  assert.equal(values.at(-1), 8192);
  assert.equal(await again.page.inputValue("#sweep-field"), "seq_len");
  await ctx.close(); await again.ctx.close();
});
