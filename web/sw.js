// Service worker: precache the app, the estimator and Pyodide on the first visit, then serve
// from the cache so that a reload works offline. The documentation's pages, styles and scripts are
// precached too; its fonts and search index on the first visit to a docs page, the rest of the standard
// library when first fetched. Responses are passed through untouched, so that Chromium's
// compiled-wasm cache keeps working for pyodide.asm.wasm. The build writes the version (a hash of every
// file) into CACHE, so a new deployment installs a new cache and deletes the old one.
const CACHE = "gmp-__VERSION__";
const FILES = __FILES__;
// Cached in the background on the first visit to a docs page: its fonts and search index.
const DOCS_LATER = __DOCS_LATER__;
let docsLater = null;

// cache: "no-cache" revalidates each file with the server instead of taking the browser's HTTP cache:
// GitHub Pages sends max-age=600, so a plain addAll after a deploy could store the old files again.
self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE)
    .then((c) => c.addAll(FILES.map((url) => new Request(url, { cache: "no-cache" }))))
    .then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    // the worker's Python snapshot for this build (gmp-snapshot-VERSION) stays; older ones go
    .then((keys) => Promise.all(keys.filter((k) => k.startsWith("gmp-") && k !== CACHE && k !== `gmp-snapshot-${CACHE.slice(4)}`)
      .map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

// One open of the cache per service-worker start, not one per request (a page load makes a dozen).
let opened = null;
const openCache = () => (opened ||= caches.open(CACHE).catch((err) => { opened = null; throw err; }));

self.addEventListener("fetch", (event) => {
  const req = event.request;
  if (req.method !== "GET" || new URL(req.url).origin !== self.location.origin) return;
  if (!docsLater && new URL(req.url).pathname.startsWith(new URL("docs/", self.registration.scope).pathname)) {
    docsLater = openCache().then((cache) => Promise.all(DOCS_LATER.map((url) => cache.match(url)
      .then((hit) => hit || fetch(new Request(url, { cache: "no-cache" })).then((res) => (res.ok ? cache.put(url, res) : null)))))).catch(() => { docsLater = null; });
    event.waitUntil(docsLater);
  }
  event.respondWith(openCache().then(async (cache) => {
    const hit = await cache.match(req, { ignoreSearch: req.mode === "navigate" })
      // the app's own address is its index.html, precached once under that name
      || (new URL(req.url).pathname === new URL(self.registration.scope).pathname
        ? await cache.match(new URL("index.html", self.registration.scope).href) : undefined);
    if (hit) return hit;
    // What this build's cache stores must be this build's file: revalidate with the server ("no-cache",
    // a conditional GET) rather than take the browser's HTTP cache, which under Pages' max-age=600 can
    // still hold the previous deploy's copy of a page that is not precached (docs, stdlib-rest.zip).
    const res = await fetch(req, { cache: "no-cache" });
    if (res.ok) cache.put(req, res.clone());
    return res;
  }));
});
