// npm run build: write the complete static site to dist/ (app at the root, docs under docs/).
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, existsSync } from "node:fs";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { join, relative, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const DIST = join(ROOT, "dist");
// The runtime as the worker loads it: the stock standard library and lock file are replaced by the
// precompiled zips of scripts/build_runtime.mjs and an inline lock.
const PYODIDE_FILES = ["pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm"];
// Fetched on first use only, so not precached: the rest of the standard library, the module list.
// The docs' pages, styles and scripts are precached (the docs work offline without a visit, issue 25);
// their fonts, search index and the rest are cached on the first visit to any docs page (DOCS_LATER).
// The icon stylesheets (Font Awesome) go with their fonts, which are not precached: without the fonts they
// draw nothing offline, so precaching them only added 22 KB to a first visit (issue 25's 6 MB budget).
const DOCS_ICONS = /^docs\/css\/(fontawesome|brands|solid|regular|v4-font-face|v4-shims)[^/]*\.css$/;
const DOCS_PAGES = /^docs\/(.*\.html|css\/[^/]*\.css|js\/[^/]*\.js)$/;
// The Architecture page is for people who change the planner, not for users offline: it is cached on the
// first visit to any docs page with the fonts, not on the app's first visit.
const DOCS_FOR_DEVELOPERS = /^docs\/architecture\//;
const DOCS_PRECACHED = { test: (u) => DOCS_PAGES.test(u) && !DOCS_ICONS.test(u) && !DOCS_FOR_DEVELOPERS.test(u) };
// uPlot's licence text ships with it (MIT) but is not needed offline.
const NOT_PRECACHED = [/^docs\/(?!(.*\.html|css\/[^/]*\.css|js\/[^/]*\.js)$)/, DOCS_ICONS, DOCS_FOR_DEVELOPERS, /^pyodide\/stdlib-rest\.zip$/, /^pyodide\/modules\.json$/,
  /^vendor\/uPlot\.LICENSE$/];
const NEVER_CACHED = [/\.map$/, /\.ttf$/, /^docs\/sitemap/, /^docs\/404\.html$/];
// (pyodide/stdlib-rest-index.json is precached: the worker reads it at every start, offline too)
const PYTHON = process.env.PYTHON || (existsSync(join(ROOT, ".venv/bin/python")) ? join(ROOT, ".venv/bin/python") : "python3");

rmSync(DIST, { recursive: true, force: true });
mkdirSync(join(DIST, "pyodide"), { recursive: true });
for (const name of readdirSync(join(ROOT, "web"))) {
  if (name !== "sw.js") cpSync(join(ROOT, "web", name), join(DIST, name), { recursive: true });
}
// The chart library (uPlot, MIT), served from this site as the CSP requires: its minified build, its
// stylesheet and its licence, precached with the rest (web/chart.js loads it on the first chart).
const UPLOT_FILES = [["dist/uPlot.iife.min.js", "uPlot.iife.min.js"], ["dist/uPlot.min.css", "uPlot.min.css"], ["LICENSE", "uPlot.LICENSE"]];
const uplotDir = join(ROOT, "node_modules", "uplot");
if (!existsSync(uplotDir)) throw new Error("node_modules/uplot is missing: run `npm ci` (package-lock.json lists it)");
mkdirSync(join(DIST, "vendor"), { recursive: true });
for (const [from, to] of UPLOT_FILES) cpSync(join(uplotDir, from), join(DIST, "vendor", to));
const pyodideDir = join(ROOT, "node_modules", "pyodide");
for (const f of PYODIDE_FILES) cpSync(join(pyodideDir, f), join(DIST, "pyodide", f));
execFileSync(PYTHON, [join(ROOT, "scripts", "bundle_core.py"), DIST], { stdio: "inherit" });
execFileSync(process.execPath, [join(ROOT, "scripts", "build_runtime.mjs"), DIST], { stdio: "inherit", cwd: ROOT });
if (existsSync(join(ROOT, "mkdocs.yml")) && process.env.SKIP_DOCS !== "1") {
  execFileSync(PYTHON, ["-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", join(DIST, "docs")], { cwd: ROOT, stdio: "inherit" });
}

function walk(dir) {
  return readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? walk(join(dir, n)) : [join(dir, n)]));
}
const files = walk(DIST).filter((f) => !f.endsWith("sw.js")).sort();
const hash = createHash("sha256");
for (const f of files) hash.update(relative(DIST, f)).update(readFileSync(f));
const version = hash.digest("hex").slice(0, 16);
const precached = files.filter((f) => !NOT_PRECACHED.some((re) => re.test(relative(DIST, f).split("\\").join("/"))));
// "./" is not fetched apart: the service worker answers it from ./index.html (one copy on a first visit).
const urls = ["./index.html", ...precached.map((f) => `./${relative(DIST, f).split("\\").join("/")}`)]
  .filter((u) => !u.endsWith(".map"))
  .map((u) => (u === "./index.html" ? u : u.replace(/\/index\.html$/, "/")));
const rel = (f) => relative(DIST, f).split("\\").join("/");
const docsLater = files.map(rel).filter((u) => u.startsWith("docs/") && !DOCS_PRECACHED.test(u) && !NEVER_CACHED.some((re) => re.test(u)))
  .map((u) => `./${u}`);
const sw = readFileSync(join(ROOT, "web", "sw.js"), "utf8")
  .replace("__VERSION__", version).replace("__FILES__", JSON.stringify([...new Set(urls)]))
  .replace("__DOCS_LATER__", JSON.stringify(docsLater));
writeFileSync(join(DIST, "sw.js"), sw);
// The worker keys its Python snapshot by the same version.
writeFileSync(join(DIST, "worker.js"), readFileSync(join(DIST, "worker.js"), "utf8").replace("__VERSION__", version));
writeFileSync(join(DIST, ".nojekyll"), "");
console.log(`built dist/ (${files.length} files, cache version ${version})`);
