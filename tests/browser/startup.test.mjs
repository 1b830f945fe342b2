// Start-up (issue 11): the first visit starts Python from the precompiled standard library and then
// saves a snapshot; a reload restores it; a corrupt snapshot falls back to a normal start; a module
// outside the precompiled list still imports in the browser.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { start, waitForResult } from "./harness.mjs";
import { DIST } from "../../scripts/serve.mjs";

let h;
before(async () => { h = await start({ pages: true, snapshots: true }); });
after(async () => { await h?.close(); });

const QUERY = "?model=llama-3.2-1b&mode=lora";
// The build's version, which keys its snapshot (scripts/build.mjs writes it into sw.js and worker.js).
const BUILD = readFileSync(join(DIST, "sw.js"), "utf8").match(/const CACHE = "gmp-([0-9a-f]{16})"/)[1];

async function firstVisit() {
  const ctx = await h.browser.newContext();
  const page = await ctx.newPage();
  await page.goto(h.base + QUERY);
  const result = await waitForResult(page);
  return { ctx, page, result };
}

test("the first visit starts fresh and saves a snapshot; a reload restores it with the same answer", async () => {
  const { ctx, page, result } = await firstVisit();
  assert.equal(await page.evaluate(() => document.body.dataset.startPath), "fresh");
  // this browser never stored a snapshot (boot.js named the worker so): the worker did not look for one
  assert.equal(await page.evaluate(() => document.body.dataset.startLookup), "no");
  await page.waitForFunction(() => document.body.dataset.snapshot, null, { timeout: 60000 });
  assert.equal(await page.evaluate(() => document.body.dataset.snapshot), "stored");
  assert.equal(await page.evaluate(() => localStorage.getItem("gmp-snapshot")), BUILD);
  await page.reload();
  const again = await waitForResult(page);
  assert.equal(await page.evaluate(() => document.body.dataset.startPath), "snapshot");
  assert.equal(await page.evaluate(() => document.body.dataset.startLookup), "yes");
  assert.equal(again.peak, result.peak);
  assert.equal(await page.evaluate(() => document.body.dataset.snapshot || ""), "");      // nothing new to save
  // a standard-library module outside the precompiled list: fetched with the rest of the library
  const probe = await page.evaluate(() => globalThis.gmpImportCheck("xml.dom.minidom"));
  assert.match(probe, /^ok \/lib\/stdlib-rest\.zip\/xml\/dom\/minidom\.py$/);
  assert.match(await page.evaluate(() => globalThis.gmpImportCheck("json")), /^ok \/lib\/python314\.zip\/json\/__init__\.pyc$/);
  // an unused module of a package whose used modules are precompiled: found in the rest, same package path
  assert.match(await page.evaluate(() => globalThis.gmpImportCheck("encodings.cp1252")),
    /^ok \/lib\/stdlib-rest\.zip\/encodings\/cp1252\.py$/);
  assert.match(await page.evaluate(() => globalThis.gmpImportCheck("_no_such_module")), /^error ModuleNotFoundError/);
  assert.equal(await page.evaluate(() => globalThis.gmpImportCheck("not a module")), "invalid module name");
  await ctx.close();
});

test("the snapshot hint only makes the worker look for its own build's snapshot, and a stale one is harmless", async () => {
  for (const [hint, looked] of [["0123456789abcdef", "no"], [BUILD, "yes"]]) {
    const ctx = await h.browser.newContext();
    await ctx.addInitScript((v) => { if (!sessionStorage.getItem("seeded")) { localStorage.setItem("gmp-snapshot", v); sessionStorage.setItem("seeded", "1"); } }, hint);
    const page = await ctx.newPage();
    await page.goto(h.base + QUERY);
    const r = await waitForResult(page);
    assert.match(r.peak, /^\d+\.\d\d$/);
    // a hint for another build, or for this one with nothing stored (Cache Storage cleared): a fresh start
    assert.equal(await page.evaluate(() => document.body.dataset.startPath), "fresh");
    assert.equal(await page.evaluate(() => document.body.dataset.startLookup), looked, hint);
    await page.waitForFunction(() => document.body.dataset.snapshot === "stored", null, { timeout: 60000 });
    assert.equal(await page.evaluate(() => localStorage.getItem("gmp-snapshot")), BUILD);
    await ctx.close();
  }
});

test("a snapshot that does not restore falls back to a normal start and says so", async () => {
  const { ctx, page } = await firstVisit();
  await page.waitForFunction(() => document.body.dataset.snapshot === "stored", null, { timeout: 60000 });
  await page.evaluate(async () => {
    const name = (await caches.keys()).find((k) => k.startsWith("gmp-snapshot-"));
    const cache = await caches.open(name);
    const [key] = await cache.keys();
    await cache.put(key, new Response(new Uint8Array(4096).fill(7)));       // not a snapshot
  });
  await page.reload();
  const r = await waitForResult(page);
  assert.equal(await page.evaluate(() => document.body.dataset.startPath), "fallback");
  assert.equal(await page.evaluate(() => localStorage.getItem("gmp-snapshot")), null);     // the hint is withdrawn
  assert.match(r.peak, /^\d+\.\d\d$/);
  await ctx.close();
});

// A visit whose first two fetches of `pattern` fail (the page's preload and the first worker's), noting
// every status line the page shows on the way to its first result.
async function visitWithBrokenFetches(pattern, reason) {
  const ctx = await h.browser.newContext();
  let aborted = 0;
  await ctx.route(pattern, (route) => {
    if (aborted < 2) { aborted++; return route.abort(reason); }
    return route.continue();
  });
  const page = await ctx.newPage();
  const statuses = [];
  await page.exposeFunction("noteStatus", (s) => statuses.push(s));
  await page.addInitScript(() => {
    new MutationObserver(() => globalThis.noteStatus?.(document.querySelector("#status")?.textContent || ""))
      .observe(document, { subtree: true, childList: true, characterData: true });
  });
  await page.goto(h.base + QUERY);
  const result = await waitForResult(page);
  return { ctx, result, statuses, aborted };
}

test("a WebAssembly fetch that fails (Chromium's occasional cache-write failure) is retried, not waited on forever", async () => {
  // Pyodide swallows a failed instantiation and never settles loadPyodide; the worker watches for it.
  const { ctx, result, statuses, aborted } = await visitWithBrokenFetches("**/pyodide/pyodide.asm.wasm", "failed");
  assert.match(result.peak, /^\d+\.\d\d$/);
  assert.equal(aborted, 2);
  assert.ok(statuses.some((s) => /again \(the WebAssembly module did not load\)/.test(s)), statuses.join(" | "));
  await ctx.close();
});

test("a start that fails (the core's zip broke off) gets a fresh worker and then answers", async () => {
  const { ctx, result, statuses, aborted } = await visitWithBrokenFetches("**/pycore.zip", "connectionreset");
  assert.match(result.peak, /^\d+\.\d\d$/);
  assert.equal(aborted, 2);
  assert.ok(statuses.some((s) => /failed to load \(.*\); starting it again/.test(s)), statuses.join(" | "));
  await ctx.close();
});
