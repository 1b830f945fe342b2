// Serve dist/ on http://127.0.0.1:PORT (default 8000): node scripts/serve.mjs [--port N] [--pages]
//
// --pages behaves like GitHub Pages: `Cache-Control: max-age=600`, gzip by MIME type, ETag and
// Last-Modified validators. Without it, every response says `no-cache` (always revalidate), which
// suits development. The tests and scripts/bench_web.mjs use both.
import { createServer } from "node:http";
import { readFile, readdir, realpath, stat } from "node:fs/promises";
import { gzip } from "node:zlib";
import { promisify } from "node:util";
import { join, extname, resolve, relative, isAbsolute, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const DIST = join(dirname(fileURLToPath(import.meta.url)), "..", "dist");
const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
  ".json": "application/json", ".wasm": "application/wasm", ".zip": "application/zip", ".svg": "image/svg+xml",
  ".png": "image/png", ".ico": "image/x-icon", ".txt": "text/plain", ".xml": "application/xml", ".map": "application/json",
  ".woff2": "font/woff2", ".woff": "font/woff", ".ttf": "font/ttf", ".gz": "application/gzip" };
// GitHub Pages compresses text-like types and wasm; already-compressed formats go as they are.
const GZIP = /^(text\/|application\/(javascript|json|wasm|xml)|image\/svg)/;
// Links carry the configuration (a pasted config.json, compressed); allow long ones.
const MAX_HEADER_BYTES = 1 << 20;

// The file under root for a URL path, or null if the path leaves root (resolved, not by prefix:
// "/../dist-secret/x" must not reach a sibling folder whose name starts with "dist").
export function resolveInside(root, urlPath) {
  const file = resolve(root, "." + urlPath);
  const rel = relative(root, file);
  if (rel.startsWith("..") || isAbsolute(rel)) return null;
  return file;
}

// The real path (symbolic links followed) of `file`, or null if it lies outside root's real path: a
// link inside dist/ must not serve a file from elsewhere on the machine. An absent file stays as it is
// (it is answered 404).
export async function realInside(root, file) {
  const real = await realpath(file).catch(() => null);
  if (real === null) return file;
  const rel = relative(await realpath(root), real);
  return rel.startsWith("..") || isAbsolute(rel) ? null : real;
}

// Connections held at once, and how long a client may take to send its headers and its request: a
// development server on loopback, but one that a page's stray loop or a slow client cannot exhaust.
const MAX_CONNECTIONS = 64;
const HEADERS_TIMEOUT_MS = 10000;
const REQUEST_TIMEOUT_MS = 30000;

const etagOf = (info) => `"${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`;

export function serve(port = 8000, { host = "127.0.0.1", pages = false, root = DIST } = {}) {
  // file and validator -> the compressed body (a promise: a large file is compressed off the event
  // loop, so the other responses do not wait for it, as on GitHub Pages' CDN)
  const gzipped = new Map();
  const compressed = (file, etag, body) => {
    const key = `${file}:${etag}`;
    if (!gzipped.has(key)) gzipped.set(key, promisify(gzip)(body));
    return gzipped.get(key);
  };
  const server = createServer({ maxHeaderSize: MAX_HEADER_BYTES }, async (req, res) => {
    try {
      let path;
      try { path = decodeURIComponent(new URL(req.url, "http://x").pathname); } catch { res.writeHead(400).end(); return; }
      let file = resolveInside(server.root, path);
      if (file && !file.includes("\0")) file = await realInside(server.root, file);
      if (file && (await stat(file).catch(() => null))?.isDirectory()) file = await realInside(server.root, join(file, "index.html"));
      if (!file || file.includes("\0")) { res.writeHead(403).end(); return; }
      const info = await stat(file);
      const type = TYPES[extname(file)] || "application/octet-stream";
      const etag = etagOf(info);
      const headers = { "content-type": type, "cache-control": pages ? "max-age=600" : "no-cache", etag,
        "last-modified": info.mtime.toUTCString() };
      if (req.headers["if-none-match"] === etag) { res.writeHead(304, headers).end(); return; }
      let body = await readFile(file);
      if (pages && GZIP.test(type) && /\bgzip\b/.test(req.headers["accept-encoding"] || "")) {
        body = await compressed(file, etag, body);
        headers["content-encoding"] = "gzip";
        headers.vary = "Accept-Encoding";
      }
      server.bytesServed += body.length;
      server.requests.push(path);
      res.writeHead(200, headers);
      res.end(req.method === "HEAD" ? undefined : body);
    } catch {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
    }
  });
  // Compress every file ahead of the first request (the benchmark's cold visits then measure the
  // browser, not this server's first gzip of a 10 MB module, which a CDN has cached).
  server.warm = async (dir = server.root) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const file = join(dir, entry.name);
      if (entry.isDirectory()) { await server.warm(file); continue; }
      if (!GZIP.test(TYPES[extname(file)] || "")) continue;
      await compressed(file, etagOf(await stat(file)), await readFile(file));
    }
  };
  server.maxConnections = MAX_CONNECTIONS;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.root = resolve(root);         // a test may point it at another build (a "deploy")
  server.bytesServed = 0;
  server.requests = [];
  return new Promise((ok) => server.listen(port, host, () => ok(server)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf("--port");
  const port = i > 0 ? Number(process.argv[i + 1]) : Number(process.env.PORT || 8000);
  const pages = process.argv.includes("--pages");
  const server = await serve(port, { pages });
  console.log(`Serving dist/ at http://127.0.0.1:${server.address().port}/${pages ? " (GitHub Pages headers)" : ""}`);
}
