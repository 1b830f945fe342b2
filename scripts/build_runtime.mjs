// Precompile what the page's Python start-up reads, with the pinned Pyodide itself (run by build.mjs):
//   node scripts/build_runtime.mjs OUT_DIR
//
// 1. The module list: start Pyodide in Node, import pycore.api and run the core's test workloads
//    (every request of tests/data/golden_*.json, the Pyodide parity requests, hostile and error
//    requests, the schema and the catalog). The standard-library modules loaded from the stdlib zip
//    by then are the list: Pyodide's own start-up modules and everything the core imports.
// 2. OUT_DIR/pyodide/stdlib-core.zip: those modules as sourceless .pyc (UNCHECKED_HASH, compiled by
//    the same CPython 3.14 build, so the magic number always matches), without the module and function
//    docstrings, as python -OO drops them (asserts and class docstrings stay), and without column ranges
//    (line numbers stay), as python -X no_debug_ranges compiles. Pyodide mounts it as
//    /lib/python314.zip through loadPyodide's stdLibURL.
//    OUT_DIR/pyodide/stdlib-rest.zip: every other file, as .py. The worker fetches it the first time an
//    import misses, and searches it for top-level modules and, under the same package path, for the
//    unused submodules of packages the core zip holds (a package's __path__ points into one zip).
// 3. OUT_DIR/pycore.zip: the core as sourceless .pyc beside its data files, imported from the zip.
// 4. OUT_DIR/pyodide/modules.json: the list, with the zips' sizes (the tests check it still covers
//    what the workloads load).
import { loadPyodide } from "pyodide";
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const OUT = process.argv[2] || join(ROOT, "dist");
const LIB = "/home/pyodide/lib";

function copyTree(py, src, dst) {
  py.FS.mkdirTree(dst);
  for (const name of readdirSync(src)) {
    if (name === "__pycache__") continue;
    const s = join(src, name);
    if (statSync(s).isDirectory()) copyTree(py, s, `${dst}/${name}`);
    else if (/\.(py|json)$/.test(name)) py.FS.writeFile(`${dst}/${name}`, readFileSync(s));
  }
}

export function workloadRequests() {
  const out = [];
  for (const name of ["golden_parallel.json", "golden_serving.json"]) {
    for (const c of JSON.parse(readFileSync(join(ROOT, "tests", "data", name), "utf8")).checks) if (c.request) out.push(c.request);
  }
  out.push({ model: "gpt2", workload: { mode: "full", attention: "eager" }, precision: { weights: "fp32", autocast: "bf16" } },
    { model: "llama-3.1-8b", workload: { mode: "lora", batch_size: 1, seq_len: 2048, gradient_checkpointing: true }, gpu: "rtx-4090-24gb", solve: true },
    { model: "qwen3-30b-a3b", workload: { mode: "inference", batch_size: 16, seq_len: 4096, new_tokens: 256 }, precision: { weights: "int4" }, solve: true },
    { model: "llama-3.1-8b", workload: { mode: "qlora", optimizer: "adamw_8bit" }, solve: true },
    { model: "llama-2-7b", workload: { mode: "full" }, precision: { weights: "fp32", autocast: "bf16" }, plan: { limit: 5 } },
    { model: "qwen3-30b-a3b", gpu: "h100-sxm-80gb", workload: { mode: "serve", engine: "vllm", tensor_parallel_size: 2 }, solve: true },
    { model: "llama-3.1-8b", gpu: "rtx-4090-24gb", workload: { mode: "serve", engine: "llamacpp", n_ctx: 8192 }, solve: true },
    { model: "llama-3.1-8b", workload: { mode: "serve", engine: "sglang" }, solve: true },
    { model: "llama-3.1-8b", workload: { mode: "full", batch_size: 8, seq_len: 4096 }, precision: { weights: "fp32", autocast: "bf16" },
      gpu: "a100-80gb", solve: true, fit: { limit: 5 } },
    { model: "gpt2", precision: { weights: "fp32" }, measured: { text: "| Allocated memory | 1 MiB | 2 MiB | 3 MiB | 4 MiB |\nmax_memory_reserved 3 GiB\n|  1MiB / 2MiB |" } },
    { model: "nope" }, { model: "gpt2", workload: { batch_size: -3 } }, { hf_config: "[".repeat(100) + "]".repeat(100) });
  return out;
}

// Imported by the tests for workloadRequests() alone (scripts/build_runtime.mjs?list-only): no build.
if (!import.meta.url.endsWith("?list-only")) await build();

async function build() {
// PYTHONNODEBUGRANGES: the .pyc keep line numbers but not the column ranges tracebacks underline with ^^^
// (python -X no_debug_ranges): pycore.zip and stdlib-core.zip are then about a third smaller, on the first
// visit and in what start-up unmarshals.
const py = await loadPyodide({ env: { PYTHONNODEBUGRANGES: "1" } });
// Import the core as the worker does, from a zip on sys.path (scripts/bundle_core.py's source zip, which
// build.mjs writes first), so that zipimport's reading of it is among the modules used.
const sourceZip = join(OUT, "pycore.zip");
let corePath = LIB;
if (existsSync(sourceZip)) { py.FS.writeFile("/lib/pycore-source.zip", new Uint8Array(readFileSync(sourceZip))); corePath = "/lib/pycore-source.zip"; }
else copyTree(py, join(ROOT, "pycore"), `${LIB}/pycore`);
py.runPython(`import sys; sys.path.insert(0, '${corePath}'); import pycore.api`);
const api = py.pyimport("pycore.api");
for (const r of workloadRequests()) api.estimate(JSON.stringify(r));
// "Copy as command", the link and the Markdown export (the page's "links" requests)
api.links(JSON.stringify({ model: "llama-3.1-8b", workload: { mode: "lora" }, gpu: "rtx-4090-24gb" }));
api.links(JSON.stringify({ hf_config: '{"model_type": "gpt2"}', workload: { mode: "serve", engine: "vllm" } }));
api.estimate("{not json");
api.schema();
api.catalog();

const used = JSON.parse(py.runPython(`
import sys, json, zipimport
ZIP = '/lib/python314.zip'
json.dumps(sorted({m.__spec__.origin[len(ZIP) + 1:] for m in list(sys.modules.values())
                   if isinstance(getattr(getattr(m, '__spec__', None), 'loader', None), zipimport.zipimporter)
                   and (m.__spec__.origin or '').startswith(ZIP + '/')}))`));

py.globals.set("USED", py.toPy(used));
// the sources to compile, as files
if (corePath !== LIB) py.unpackArchive(new Uint8Array(readFileSync(sourceZip)), "zip", { extractDir: LIB });
py.runPython(`
import ast, importlib.util, os, zipfile
ZIP = '/lib/python314.zip'
USED = set(USED)
src = zipfile.ZipFile(ZIP)
DATE = (2020, 1, 1, 0, 0, 0)                       # reproducible bytes

def without_docstrings(tree):
    """Drop module and function docstrings, as python -OO does (the library is written to run so), but
    keep class docstrings (dataclasses and enum would otherwise compute one at import) and asserts."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.copy_location(ast.Pass(), first)]
    return tree

def compiled(path, data):
    """Sourceless .pyc bytes (UNCHECKED_HASH) of one module; tracebacks name path and keep line numbers."""
    code = compile(without_docstrings(ast.parse(data, path)), path, 'exec', dont_inherit=True)
    return bytes(importlib._bootstrap_external._code_to_hash_pyc(code, importlib.util.source_hash(data), checked=False))

def put(zf, name, data):
    info = zipfile.ZipInfo(name, date_time=DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data, compresslevel=9)          # built once, downloaded on every first visit

# The core zip holds exactly the modules used; everything else (whole packages, and the unused modules
# of used packages such as the 120 codecs of encodings) goes to the rest zip, which the worker's import
# hook searches under the same package paths.
in_core = lambda n: n in USED
REST_NAMES = []
with zipfile.ZipFile('/tmp/stdlib-core.zip', 'w') as core, zipfile.ZipFile('/tmp/stdlib-rest.zip', 'w') as rest:
    for info in src.infolist():
        n = info.filename
        if n.endswith('/'):
            continue
        data = src.read(n)
        if not in_core(n):
            put(rest, n, data)
            if n.endswith('.py'):
                REST_NAMES.append(n[:-3].replace('/__init__', '').replace('/', '.'))
        elif n in USED and n.endswith('.py'):
            put(core, n + 'c', compiled(ZIP + '/' + n, data))     # tracebacks name /lib/python314.zip/...
        else:
            put(core, n, data)

# pycore: sourceless .pyc beside the data files (the worker puts the zip on sys.path), its docstrings dropped as the
# library's are (the core never reads __doc__); the command line is not part of the page.
with zipfile.ZipFile('/tmp/pycore.zip', 'w') as zf:
    for root, dirs, files in sorted(os.walk('${LIB}/pycore')):
        dirs.sort()
        for f in sorted(files):
            full = os.path.join(root, f)
            rel = os.path.relpath(full, '${LIB}')
            if rel.startswith('pycore/cli/') or rel == 'pycore/__main__.py':
                continue
            with open(full, 'rb') as fh:
                data = fh.read()
            if f.endswith('.py'):
                put(zf, rel + 'c', compiled('/lib/pycore.zip/' + rel, data))   # tracebacks name where the worker imports it
            elif f.endswith('.json'):
                put(zf, rel, data)
`);

mkdirSync(join(OUT, "pyodide"), { recursive: true });
// The modules the rest zip can serve: the worker's import hook fetches the zip only for one of these,
// so an optional import that fails anyway (try: import _foo) costs nothing.
writeFileSync(join(OUT, "pyodide", "stdlib-rest-index.json"), py.runPython("import json; json.dumps(sorted(set(REST_NAMES)))"));
const sizes = {};
for (const [file, dest] of [["stdlib-core.zip", "pyodide/stdlib-core.zip"], ["stdlib-rest.zip", "pyodide/stdlib-rest.zip"],
  ["pycore.zip", "pycore.zip"]]) {
  const bytes = py.FS.readFile(`/tmp/${file}`);
  writeFileSync(join(OUT, dest), bytes);
  sizes[dest] = bytes.length;
}
writeFileSync(join(OUT, "pyodide", "modules.json"), JSON.stringify({ modules: used, sizes }, null, 1));
console.log(`runtime: ${used.length} stdlib modules precompiled; ${Object.entries(sizes).map(([k, v]) => `${k} ${v}`).join(", ")}`);
}
