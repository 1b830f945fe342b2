// Shared set-up for the browser tests: serve dist/ on a free port and launch Debian's Chromium.
import { chromium } from "playwright-core";
import { existsSync } from "node:fs";
import { execFileSync } from "node:child_process";
import assert from "node:assert/strict";
import { serve } from "../../scripts/serve.mjs";
import { ROOT } from "../pyodide/load.mjs";

export const CHROMIUM = process.env.CHROMIUM || ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));

export async function start(options = {}) {
  // GMP_DIST serves another build (the page before a change, to see a new test fail on it).
  const server = await serve(0, { pages: options.pages, root: options.root || process.env.GMP_DIST });
  const base = `http://127.0.0.1:${server.address().port}/`;
  const browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });
  // The Python snapshot costs each new context half a second of worker time after its first answers;
  // only the tests of start-up itself (options.snapshots) let the page take it.
  if (!options.snapshots) {
    const newContext = browser.newContext.bind(browser);
    browser.newContext = async (...args) => {
      const ctx = await newContext(...args);
      await ctx.addInitScript(() => { globalThis.GMP_NO_SNAPSHOT = true; });
      return ctx;
    };
  }
  return { server, base, browser, async close() { await browser.close(); server.close(); } };
}

// Wait until the page has rendered a result for the current inputs.
export async function waitForResult(page, previous = null) {
  try {
    await page.waitForFunction((prev) => document.body.dataset.computed && document.body.dataset.computed !== prev,
      previous, { timeout: 60000 });
  } catch (err) {
    // Say what the page showed instead: the loader's status, its messages, how the worker started.
    const seen = await page.evaluate(() => ({ status: document.querySelector("#status")?.textContent,
      messages: document.querySelector("#messages")?.textContent, start: document.body.dataset.startPath,
      url: location.href })).catch((e) => String(e));
    throw new Error(`${err.message}; the page showed ${JSON.stringify(seen)}`);
  }
  return page.evaluate(() => ({ peak: document.querySelector('[data-testid="peak"]').textContent,
    // verdict: its key (fits, at-risk, does-not-fit); verdictText: the words the badge shows
    verdict: document.querySelector('[data-testid="verdict"]').dataset.verdict,
    verdictText: document.querySelector('[data-testid="verdict"]').textContent, computed: document.body.dataset.computed }));
}

// Bytes as the page writes them in GiB (web/dom.js fmt with the default unit).
export const gib = (b) => `${(b / 2 ** 30).toFixed(2)} GiB`;

// The core's own answer to a request (pycore.api.estimate under the test's Python), which must be ok.
export function coreEstimate(request) {
  const py = process.env.PYTHON || "python3";
  const out = JSON.parse(execFileSync(py, ["-c", "import sys; from pycore.api import estimate; print(estimate(sys.argv[1]))",
    JSON.stringify(request)], { cwd: ROOT }).toString());
  assert.equal(out.status, "ok", JSON.stringify(out.errors));
  return out.result;
}

// A new context and page of the harness `h` at `query`, once its first result is rendered.
export async function openPage(h, query, options = {}) {
  const ctx = await h.browser.newContext(options);
  const page = await ctx.newPage();
  await page.goto(h.base + query);
  const result = await waitForResult(page);
  return { ctx, page, result };
}
