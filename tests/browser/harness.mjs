// Shared set-up for the browser tests: serve dist/ on a free port and launch Debian's Chromium.
import { chromium } from "playwright-core";
import { existsSync } from "node:fs";
import { serve } from "../../scripts/serve.mjs";

export const CHROMIUM = process.env.CHROMIUM || ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));

export async function start(options = {}) {
  const server = await serve(0, options);
  const base = `http://127.0.0.1:${server.address().port}/`;
  const browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });
  return { server, base, browser, async close() { await browser.close(); server.close(); } };
}

// Wait until the page has rendered a result for the current inputs.
export async function waitForResult(page, previous = null) {
  await page.waitForFunction((prev) => document.body.dataset.computed && document.body.dataset.computed !== prev,
    previous, { timeout: 60000 });
  return page.evaluate(() => ({ peak: document.querySelector('[data-testid="peak"]').textContent,
    verdict: document.querySelector('[data-testid="verdict"]').textContent, computed: document.body.dataset.computed }));
}
