// Issue 8 in Chromium: hostile links, rejected typed values, a hung worker, and a deploy under
// GitHub Pages' headers. Every hostile link must show a message, compute the default, and leave
// the page responsive.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, writeFileSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateRawSync } from "node:zlib";
import { start, waitForResult } from "./harness.mjs";
import { DIST, resolveInside } from "../../scripts/serve.mjs";

let h;
before(async () => { h = await start(); });
after(async () => { await h?.close(); });

const b64url = (buf) => buf.toString("base64").replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const cfgParam = (text) => b64url(deflateRawSync(Buffer.from(text)));

async function open(query, context = null) {
  const ctx = context || await h.browser.newContext();
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(h.base + query);
  const result = await waitForResult(page);
  return { ctx, page, result, errors };
}

async function stillResponsive(page, result) {
  await page.fill('input[name="batch"]', "3");
  const next = await waitForResult(page, result.computed);
  assert.match(next.peak, /^\d+\.\d\d$/);
  assert.match(page.url(), /batch=3/);
}

const HOSTILE = {
  // 10 million layers and a list of 2,000 zeros: hung the worker for good before the limit came first
  "layer count": `?cfg=${cfgParam(JSON.stringify({ model_type: "qwen2_moe", hidden_size: 64, num_hidden_layers: 10000000,
    num_attention_heads: 4, vocab_size: 100, intermediate_size: 64, num_experts: 4, mlp_only_layers: Array(2000).fill(0) }))}`,
  // about 200 KB that inflates to 200 MB: crashed the tab
  "decompression bomb": `?cfg=${b64url(deflateRawSync(Buffer.alloc(200_000_000, 32)))}`,
  // 5 million zeros (10 MB): froze the page while it was pretty-printed
  "huge array": `?cfg=${cfgParam("[" + "0,".repeat(5_000_000) + "0]")}`,
  // 8,000 levels: two uncaught RangeErrors before
  "deep nesting": `?cfg=${cfgParam('{"a":'.repeat(8000) + "1" + "}".repeat(8000))}`,
  "infinite hidden size": `?cfg=${cfgParam('{"model_type": "llama", "hidden_size": 1e400, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "intermediate_size": 8}')}`,
  "custom memory": "?mem=9999999.999",
  "too many tokens": "?batch=100000000&seq=100000000",
  "int4 for training": "?w=int4&mode=full",
  "LoRA targets that match nothing": "?mode=lora&targets=foo,bar",
  "malformed dims": "?dims=1,2,3",
  "oversized dims": "?dims=99999999,99999999,99999999,1,1,99999999",
};

for (const [name, query] of Object.entries(HOSTILE)) {
  test(`a hostile link (${name}) gets a message, the default result, and a responsive page`, async () => {
    const { ctx, page, result, errors } = await open(query);
    const messages = await page.textContent("#messages");
    assert.match(messages, /“(cfg|mem|seq|batch|w|mode|targets|dims)”/, messages);
    assert.match(result.peak, /^\d+\.\d\d$/);
    assert.ok(["fits", "at-risk", "does-not-fit"].includes(result.verdict));
    assert.deepEqual(errors, []);
    await stillResponsive(page, result);
    await ctx.close();
  });
}

test("the infinite hidden size is reported as the field it is, not as missing", async () => {
  const { ctx, page } = await open(HOSTILE["infinite hidden size"]);
  assert.match(await page.textContent("#messages"), /hidden_size.*(integer|inf)/);
  await ctx.close();
});

test("typed values the schema rejects are named next to their field, and the URL and result stay", async () => {
  const { ctx, page, result } = await open("?model=llama-3.2-1b");
  const url = page.url();
  for (const [name, value] of [["batch", "1.5"], ["batch", "-3"], ["dp", "0"], ["mem", "-5"]]) {
    await page.fill(`input[name="${name}"]`, value);
    await page.waitForFunction((n) => document.getElementById(`err-${n}`).textContent.length > 0, name);
    assert.equal(await page.getAttribute(`input[name="${name}"]`, "aria-invalid"), "true");
    assert.equal(page.url(), url);
    assert.equal(await page.textContent('[data-testid="peak"]'), result.peak);
  }
  await page.fill('input[name="batch"]', "2");
  const next = await waitForResult(page, result.computed);
  assert.equal(await page.textContent("#err-batch"), "");
  assert.notEqual(next.peak, result.peak);
  await ctx.close();
});

test("a value the core rejects after the schema accepted it is named next to its field", async () => {
  const { ctx, page, result } = await open("?model=llama-3.2-1b&batch=20000");
  await page.fill('input[name="seq"]', "100000");           // 20,000 x 100,000 tokens: over the limit
  await page.waitForFunction(() => document.getElementById("err-seq").textContent.length > 0);
  assert.match(await page.textContent("#err-seq"), /batch_size x seq_len/);
  assert.equal(await page.textContent('[data-testid="peak"]'), result.peak);
  await ctx.close();
});

test("a request that never returns is abandoned, the worker restarted, and the page says so", async () => {
  const ctx = await h.browser.newContext();
  // A worker that hangs on one marked request, standing in for any input that would take forever.
  // It hangs where a slow input would: after the worker has said it started on the request.
  const source = readFileSync(join(DIST, "worker.js"), "utf8");
  const started = 'postMessage({ type: "started", id });';
  assert.ok(source.includes(started));
  const worker = source.replace(started,
    `${started}\n  if (String(request).includes('"batch_size":7777')) for (;;) {}`);
  await ctx.route("**/worker.js", (route) => route.fulfill({ contentType: "text/javascript", body: worker }));
  const { page, result } = await open("?model=llama-3.2-1b", ctx);
  await page.fill('input[name="batch"]', "7777");
  await page.waitForFunction(() => /restarted/.test(document.querySelector("#messages").textContent), null, { timeout: 30000 });
  const after = await waitForResult(page, result.computed);
  assert.equal(after.peak, result.peak);                      // the last configuration that worked
  assert.equal(await page.inputValue('input[name="batch"]'), "1");
  await stillResponsive(page, after);
  await ctx.close();
});

test("a link with a 20 KB pasted config works on the dev server", async () => {
  const cfg = { model_type: "qwen2", hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24,
    num_attention_heads: 14, num_key_value_heads: 2, vocab_size: 151936, tie_word_embeddings: true };
  for (let i = 0; i < 1500; i++) cfg[`note_${i}_${(i * 2654435761) % 1e9}`] = (i * 40503) % 99991;
  const query = `?cfg=${cfgParam(JSON.stringify(cfg))}`;
  assert.ok(query.length > 16384, String(query.length));
  const { ctx, result } = await open(query);
  assert.match(result.peak, /^\d+\.\d\d$/);
  await ctx.close();
});

test("the server refuses paths that leave dist/, however they are encoded", async () => {
  const sibling = join(DIST, "..", "dist-secret");
  mkdirSync(sibling, { recursive: true });
  writeFileSync(join(sibling, "file.txt"), "secret");
  try {
    assert.equal(resolveInside(DIST, "/../dist-secret/file.txt"), null);
    for (const path of ["/..%2fdist-secret%2ffile.txt", "/%2e%2e%2fdist-secret%2ffile.txt", "/docs/..%2f..%2fdist-secret%2ffile.txt"]) {
      const res = await fetch(h.base.replace(/\/$/, "") + path);
      assert.notEqual(await res.text(), "secret", path);
      assert.ok(res.status === 403 || res.status === 404, `${path}: ${res.status}`);
    }
  } finally { rmSync(sibling, { recursive: true, force: true }); }
});

test("under GitHub Pages' headers, a deploy replaces the cached site within a few reloads", async () => {
  const pages = await start({ pages: true });
  const root = mkdtempSync(join(tmpdir(), "deploy-"));
  try {
    const a = join(root, "a"), b = join(root, "b");
    cpSync(DIST, a, { recursive: true });
    cpSync(DIST, b, { recursive: true });
    writeFileSync(join(b, "index.html"), readFileSync(join(b, "index.html"), "utf8").replace("<h1>Will this fit?</h1>", "<h1>Will this fit? (new deploy)</h1>"));
    const sw = readFileSync(join(b, "sw.js"), "utf8");
    writeFileSync(join(b, "sw.js"), sw.replace(/const CACHE = "gmp-([0-9a-f]+)"/, 'const CACHE = "gmp-$1-next"'));
    pages.server.root = a;
    const ctx = await pages.browser.newContext();
    const page = await ctx.newPage();
    await page.goto(pages.base);
    await waitForResult(page);
    await page.evaluate(async () => { await navigator.serviceWorker.ready; });
    await page.reload();
    await waitForResult(page);
    pages.server.root = b;                                     // the deploy
    let seen = false;
    // Each load asks for a new sw.js; the new worker installs (precaching the site) and takes over.
    // On a loaded 2-core CI machine the install can take several seconds: up to 12 reloads.
    for (let i = 0; i < 12 && !seen; i++) {
      await page.reload();
      await waitForResult(page);
      seen = (await page.textContent("h1")).includes("new deploy");
      if (!seen) await page.waitForTimeout(1500);
    }
    assert.ok(seen, "the new index.html never appeared");
    await ctx.setOffline(true);
    await page.goto(pages.base + "index.html");                // precached by its own name too
    assert.match(await page.textContent("h1"), /new deploy/);
    await ctx.close();
  } finally {
    await pages.close();
    rmSync(root, { recursive: true, force: true });
  }
});
