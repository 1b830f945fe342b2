// Measure the page's start-up in Chromium the way visitors meet it on GitHub Pages (run `npm run build` first):
//   node scripts/bench_web.mjs [--runs 5] [--changes 30] [--throttle] [--phases] [--dist DIR]
//
// The server behaves like GitHub Pages (gzip by MIME type, Cache-Control: max-age=600, validators), with
// every file compressed before the first run, as a CDN has it.
// Each run uses a new persistent browser profile and measures, from navigation start to the first
// rendered result (the page records performance.now() then):
//   cold    - the first visit, empty profile;
//   reload  - the same tab reloaded once the service worker is installed (and the snapshot stored);
//   return  - the browser closed and relaunched on the same profile, the page opened again.
// --throttle emulates a 20 Mbps / 40 ms network for the page and its worker (the cold visit).
// Prints medians over the runs, the bytes the server sent on a first visit (page, worker and
// service-worker precache, gzip as sent), and the median time from an input change to its result.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CHROMIUM } from "../tests/browser/harness.mjs";
import { serve } from "./serve.mjs";

const arg = (name, fallback) => { const i = process.argv.indexOf(name); return i > 0 ? Number(process.argv[i + 1]) : fallback; };
const RUNS = arg("--runs", 5);
const CHANGES = arg("--changes", 30);
const THROTTLE = process.argv.includes("--throttle");
// --dist DIR measures another build (a before/after comparison on the same machine, at the same time)
const DIST_ARG = process.argv.indexOf("--dist");
const ROOT_DIR = DIST_ARG > 0 ? process.argv[DIST_ARG + 1] : undefined;
const QUERY = "?model=llama-3.1-8b&mode=lora&ckpt=1&gpu=rtx-4090-24gb";
const ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"];

const server = await serve(0, { pages: true, root: ROOT_DIR });
await server.warm();
const base = `http://127.0.0.1:${server.address().port}/`;
// A visitor's browser is running before they open the page: each launch settles before the page is
// opened, so that the browser's own start-up work (profile, services) is not counted as the page's.
const SETTLE_MS = 1500;
const launch = async (dir) => {
  const ctx = await chromium.launchPersistentContext(dir, { executablePath: CHROMIUM, headless: true, args: ARGS });
  await new Promise((ok) => setTimeout(ok, SETTLE_MS));
  return ctx;
};

async function firstResult(page) {
  await page.waitForFunction(() => document.body.dataset.firstResultMs, null, { timeout: 120000 });
  return page.evaluate(() => ({ ms: Number(document.body.dataset.firstResultMs), path: document.body.dataset.startPath || "",
    timings: document.body.dataset.startTimings || "" }));
}

async function throttle(page) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 40,
    downloadThroughput: 20e6 / 8, uploadThroughput: 20e6 / 8 });
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const rows = { cold: [], reload: [], return: [], bytes: [], paths: [] };
let changeTimes = [];
for (let run = 0; run < RUNS; run++) {
  const dir = mkdtempSync(join(tmpdir(), "gmp-bench-"));
  let ctx = await launch(dir);
  let page = ctx.pages()[0] || await ctx.newPage();
  if (THROTTLE) await throttle(page);
  const bytes0 = server.bytesServed;
  await page.goto(base + QUERY);
  const cold = await firstResult(page);
  rows.cold.push(cold.ms);
  await page.evaluate(async () => { await navigator.serviceWorker.ready; });
  // the snapshot is taken when the page is idle after the first result; wait for it (or its failure)
  await page.waitForFunction(() => document.body.dataset.snapshot, null, { timeout: 20000 }).catch(() => {});
  await page.waitForTimeout(1000);
  rows.bytes.push(server.bytesServed - bytes0);
  await page.reload();
  const reload = await firstResult(page);
  rows.reload.push(reload.ms);
  if (run === 0) {
    await page.waitForTimeout(1500);
    for (let n = 0; n < CHANGES; n++) {
      changeTimes.push(await page.evaluate((value) => new Promise((resolve) => {
        const prev = document.body.dataset.computed;
        const input = document.querySelector('input[name="batch"]');
        const obs = new MutationObserver(() => {
          if (document.body.dataset.computed !== prev) { obs.disconnect(); resolve(performance.now() - t); }
        });
        obs.observe(document.body, { attributes: true, attributeFilter: ["data-computed"] });
        const t = performance.now();
        input.value = String(value);
        input.dispatchEvent(new Event("input", { bubbles: true }));
      }), 1 + (n % 16)));
      await page.waitForTimeout(300);
    }
  }
  await ctx.close();
  ctx = await launch(dir);
  page = ctx.pages()[0] || await ctx.newPage();
  await page.goto(base + QUERY);
  const back = await firstResult(page);
  rows.return.push(back.ms);
  if (process.argv.includes("--phases")) console.log(`run ${run}: cold ${cold.timings}\n  reload ${reload.timings}\n  return ${back.timings}`);
  rows.paths.push(`${cold.path || "-"} / ${reload.path || "-"} / ${back.path || "-"}`);
  await ctx.close();
  rmSync(dir, { recursive: true, force: true });
}
server.close();

const fmt = (xs) => `median ${median(xs)} ms (runs: ${xs.join(", ")})`;
console.log(`server: GitHub Pages behaviour (gzip, max-age=600)${THROTTLE ? ", network 20 Mbps / 40 ms" : ", loopback"}; ${RUNS} runs`);
console.log(`first result, cold:         ${fmt(rows.cold)}`);
console.log(`first result, reload:       ${fmt(rows.reload)}`);
console.log(`first result, return visit: ${fmt(rows.return)}`);
console.log(`start-up path (cold / reload / return): ${[...new Set(rows.paths)].join("; ")}`);
console.log(`bytes on a first visit (as sent, incl. precache): median ${median(rows.bytes)} (${(median(rows.bytes) / 1e6).toFixed(2)} MB)`);
if (changeTimes.length) {
  changeTimes.sort((a, b) => a - b);
  console.log(`input change -> updated result: median ${median(changeTimes).toFixed(1)} ms over ${changeTimes.length} changes `
    + `(p90 ${changeTimes[Math.floor(changeTimes.length * 0.9)].toFixed(1)} ms)`);
}
