// Issue 8 in Chromium: hostile links, rejected typed values, a hung worker, and a deploy under
// GitHub Pages' headers. Every hostile link must show a message, compute the default, and leave
// the page responsive.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, writeFileSync, mkdirSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { deflateRawSync } from "node:zlib";
import { start, waitForResult } from "./harness.mjs";
import { DIST, resolveInside, serve } from "../../scripts/serve.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

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

// A worker that hangs on the requests whose text includes every one of `markers`, standing in for any
// input that would take forever. It hangs where a slow input would: after the worker has said it started
// on the request. `window.gmpAsked` counts, in the page, the requests posted that include them.
async function hangingContext(...markers) {
  const ctx = await h.browser.newContext();
  const source = readFileSync(join(DIST, "worker.js"), "utf8");
  const started = 'postMessage({ type: "started", id });';
  assert.ok(source.includes(started));
  const worker = source.replace(started,
    `${started}\n  if (${JSON.stringify(markers)}.every((m) => String(request).includes(m))) for (;;) {}`);
  await ctx.route("**/worker.js", (route) => route.fulfill({ contentType: "text/javascript", body: worker }));
  await ctx.addInitScript((m) => {
    window.gmpAsked = 0;
    const post = Worker.prototype.postMessage;
    Worker.prototype.postMessage = function (msg, ...rest) {
      if (msg && m.every((x) => String(msg.request).includes(x))) window.gmpAsked++;
      return post.call(this, msg, ...rest);
    };
  }, markers);
  return ctx;
}

test("a request that never returns is stopped, named, and the user's own configuration is kept", async () => {
  const ctx = await hangingContext('"batch_size":7777', '"solve":false');
  const { page, result } = await open("?model=llama-3.2-1b", ctx);
  await page.fill('input[name="batch"]', "7777");
  await page.waitForFunction(() => /The estimate took more than 8 s/.test(document.querySelector("#messages").textContent),
    null, { timeout: 30000 });
  assert.equal(await page.inputValue('input[name="batch"]'), "7777");   // the user's value stays
  assert.match(page.url(), /batch=7777/);
  await page.waitForTimeout(3000);                            // the new worker is up and idle: nothing replayed
  assert.equal(await page.evaluate(() => window.gmpAsked), 1);
  await page.fill('input[name="batch"]', "2");                // the next change is answered
  const after = await waitForResult(page, result.computed);
  assert.notEqual(after.peak, result.peak);
  await ctx.close();
});

test("an automatic search that times out is not replayed after the restart, and the next change is answered", async () => {
  // the make-it-fit search the page runs after every answer (solve: true) hangs for batch 7777
  const ctx = await hangingContext('"batch_size":7777', '"solve":true');
  const { page, result } = await open("?model=llama-3.2-1b", ctx);
  await page.fill('input[name="batch"]', "7777");
  await page.waitForFunction(() => /search for what fits/.test(document.querySelector("#messages").textContent),
    null, { timeout: 40000 });
  await page.waitForTimeout(12000);                           // longer than the 8 s watchdog: a replay would show
  assert.equal(await page.evaluate(() => window.gmpAsked), 1, "the search ran once, never again");
  assert.equal(await page.inputValue('input[name="batch"]'), "7777");
  await page.selectOption('select[name="gpu"]', "a100-80gb"); // the user's next change
  const after = await waitForResult(page, result.computed);
  assert.ok(after.computed);
  assert.match(page.url(), /gpu=a100-80gb/);
  assert.equal(await page.inputValue('input[name="batch"]'), "7777");
  await ctx.close();
});

test("a large pasted config that the core refuses names config.json and keeps the user's settings", async () => {
  const { ctx, page, result } = await open("?model=llama-3.2-1b&batch=3");
  await page.check('input[name="source"][value="config"]');
  // 600,000 quotes: under the page's 1,000,000-character limit, 1.2 MB once escaped inside the request
  await page.evaluate(() => {
    const box = document.querySelector("#config-text");
    box.value = '"'.repeat(600000);
    box.dispatchEvent(new Event("input", { bubbles: true }));
  });
  await page.waitForFunction(() => /config\.json/.test(document.querySelector("#messages").textContent), null, { timeout: 30000 });
  const messages = await page.textContent("#messages");
  assert.doesNotMatch(messages, /URL parameter request|default configuration/);
  assert.equal(await page.inputValue('input[name="batch"]'), "3");
  assert.equal(await page.textContent('[data-testid="peak"]'), result.peak);   // the last answer stays
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

test("the server refuses a symbolic link inside its root that leads outside it, and caps what it holds", async () => {
  const root = mkdtempSync(join(tmpdir(), "served-"));
  const outside = mkdtempSync(join(tmpdir(), "outside-"));
  writeFileSync(join(root, "inside.txt"), "inside");
  writeFileSync(join(outside, "secret.txt"), "secret");
  symlinkSync(join(outside, "secret.txt"), join(root, "link.txt"));
  symlinkSync(outside, join(root, "dir"));
  symlinkSync(join(root, "inside.txt"), join(root, "alias.txt"));          // a link that stays inside is served
  const server = await serve(0, { root });
  const base = `http://127.0.0.1:${server.address().port}`;
  try {
    for (const path of ["/link.txt", "/dir/secret.txt", "/dir/"]) {
      const res = await fetch(base + path);
      assert.equal(res.status, 403, path);
      assert.notEqual(await res.text(), "secret", path);
    }
    assert.equal(await (await fetch(base + "/alias.txt")).text(), "inside");
    assert.ok(server.maxConnections > 0 && server.maxConnections <= 256, String(server.maxConnections));
    assert.ok(server.headersTimeout > 0 && server.requestTimeout > 0);
  } finally {
    server.close();
    rmSync(root, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  }
});

// A real build of the repository's sources with `edit` applied to a copy of them (web/, docs/ ...),
// written to `<dir>/dist`: the deploy test serves two of these, as GitHub Pages would serve two deploys.
function buildCopy(dir, edit) {
  const skip = new Set([".git", "node_modules", ".venv", ".venv-int", "dist", "site", "test-results", ".pytest_cache"]);
  for (const name of readdirSync(ROOT).filter((n) => !skip.has(n))) cpSync(join(ROOT, name), join(dir, name), { recursive: true });
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
  edit(dir);
  const python = process.env.PYTHON || join(ROOT, ".venv", "bin", "python");
  execFileSync(process.execPath, [join(dir, "scripts", "build.mjs")], { cwd: dir, stdio: "ignore", env: { ...process.env, PYTHON: python } });
  return join(dir, "dist");
}
const edited = (path, from, to) => writeFileSync(path, readFileSync(path, "utf8").replace(from, to));

test("under GitHub Pages' headers, a real second deploy replaces the app and the docs, online and offline", async () => {
  const pages = await start({ pages: true });
  const root = mkdtempSync(join(tmpdir(), "deploy-"));
  try {
    const a = buildCopy(join(root, "a"), () => {});
    const b = buildCopy(join(root, "b"), (dir) => {
      edited(join(dir, "web", "index.html"), "<h1>Will this fit?</h1>", "<h1>Will this fit? (new deploy)</h1>");
      edited(join(dir, "docs", "index.md"), "# GPU memory planner", "# GPU memory planner\n\nDeploy B's docs.");
    });
    pages.server.root = a;
    const ctx = await pages.browser.newContext();
    const page = await ctx.newPage();
    await page.goto(pages.base);
    await waitForResult(page);
    await page.evaluate(async () => { await navigator.serviceWorker.ready; });
    await page.reload();
    await waitForResult(page);
    const docs = await ctx.newPage();
    await docs.goto(pages.base + "docs/");                   // build A's docs: in the browser's HTTP cache for 600 s
    assert.doesNotMatch(await docs.textContent("body"), /Deploy B's docs/);
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
    await docs.goto(pages.base + "docs/");                   // a return visit, as a link or a bookmark opens it
    assert.match(await docs.textContent("body"), /Deploy B's docs/, "the docs are still build A's");
    await ctx.setOffline(true);
    await page.goto(pages.base + "index.html");                // precached by its own name too
    assert.match(await page.textContent("h1"), /new deploy/);
    await docs.goto(pages.base + "docs/");
    assert.match(await docs.textContent("body"), /Deploy B's docs/, "offline, the docs are build A's");
    await ctx.close();
  } finally {
    await pages.close();
    rmSync(root, { recursive: true, force: true });
  }
});
