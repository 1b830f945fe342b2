// Measure the page in Chromium against the local server (run `npm run build` first):
//   node scripts/bench_web.mjs [--changes 30]
// Prints time to first result cold (empty cache) and warm (service worker), the median time from
// an input change to the updated result, and the bytes the server sent on the first visit.
import { start, waitForResult } from "../tests/browser/harness.mjs";

const i = process.argv.indexOf("--changes");
const CHANGES = i > 0 ? Number(process.argv[i + 1]) : 30;
const QUERY = "?model=llama-3.1-8b&mode=lora&ckpt=1&gpu=rtx-4090-24gb";
const h = await start();
const ctx = await h.browser.newContext();
const page = await ctx.newPage();

let t0 = Date.now();
await page.goto(h.base + QUERY);
await waitForResult(page);
const cold = Date.now() - t0;
await page.evaluate(async () => { await navigator.serviceWorker.ready; });
await page.waitForTimeout(3000);                // let the service worker finish precaching
const firstVisitBytes = h.server.bytesServed;

await page.reload();                             // first controlled load
await waitForResult(page);
const before = h.server.bytesServed;
t0 = Date.now();
await page.reload();
await waitForResult(page);
const warm = Date.now() - t0;
const warmBytes = h.server.bytesServed - before;

await page.waitForTimeout(1500);
const times = [];
for (let n = 0; n < CHANGES; n++) {
  const ms = await page.evaluate((value) => new Promise((resolve) => {
    const prev = document.body.dataset.computed;
    const input = document.querySelector('input[name="batch"]');
    const obs = new MutationObserver(() => {
      if (document.body.dataset.computed !== prev) { obs.disconnect(); resolve(performance.now() - t); }
    });
    obs.observe(document.body, { attributes: true, attributeFilter: ["data-computed"] });
    const t = performance.now();
    input.value = String(value);
    input.dispatchEvent(new Event("input", { bubbles: true }));
  }), 1 + (n % 16));
  times.push(ms);
  await page.waitForTimeout(400);                // let the solver pass finish between changes
}
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)];
console.log(`first result, cold (empty cache): ${cold} ms`);
console.log(`first result, warm (service worker): ${warm} ms (${warmBytes} bytes from the server)`);
console.log(`input change -> updated result: median ${median.toFixed(1)} ms over ${CHANGES} changes (p90 ${times[Math.floor(times.length * 0.9)].toFixed(1)} ms)`);
console.log(`bytes sent by the server on the first visit (page + service worker precache): ${firstVisitBytes}`);
await h.close();
