// The start-up runtime of the page (issue 11): the precompiled standard library and pycore built by
// scripts/build_runtime.mjs, and the private Pyodide snapshot API the worker relies on, pinned to the
// version read. Needs dist/ (node scripts/build.mjs).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { loadPyodide } from "pyodide";
import { ROOT } from "./load.mjs";

const PYODIDE = join(ROOT, "node_modules", "pyodide");
const DIST = join(ROOT, "dist");
const LOCK = { info: { abi_version: "2026_0" }, packages: {} };
const STDLIB = join(DIST, "pyodide", "stdlib-core.zip");
const read = (f) => readFileSync(join(PYODIDE, f), "utf8");
const bytes = (f) => new Uint8Array(readFileSync(f));

test("the private Pyodide start-up surface is the one the worker was written against", () => {
  // A Pyodide upgrade fails here until someone has checked web/worker.js against the new version:
  // _makeSnapshot, _loadSnapshot and makeMemorySnapshot are private and may change in any release.
  assert.equal(JSON.parse(read("package.json")).version, "314.0.7");
  const mjs = read("pyodide.mjs"), asm = read("pyodide.asm.mjs"), dts = read("pyodide.d.ts");
  for (const s of ['e.stdLibURL!=null?t=e.stdLibURL:t=e.indexURL+"python_stdlib.zip"', "e._loadSnapshot",
    "noInitialRun=!0,t.INITIAL_MEMORY=i.length", "i.restoreSnapshot(t)", "i.finalizeBootstrap(s,n._snapshotDeserializer)",
    "e.lockFileContents&&e.lockFileURL"]) assert.ok(mjs.includes(s), `pyodide.mjs lacks ${s}`);
  for (const s of ["makeMemorySnapshot({serializer:e}={})", "API.makeSnapshot=function", "API.restoreSnapshot=function",
    'API.version="314.0.7"', 'abiVersion="2026_0"']) assert.ok(asm.includes(s), `pyodide.asm.mjs lacks ${s}`);
  for (const s of ["_makeSnapshot?: boolean", "_loadSnapshot?:", "stdLibURL?: string", "lockFileContents?:"]) {
    assert.ok(dts.includes(s), `pyodide.d.ts lacks ${s}`);
  }
});

async function builtRuntime(options = {}) {
  assert.ok(existsSync(STDLIB), "run node scripts/build.mjs first");
  const py = await loadPyodide({ stdLibURL: STDLIB, lockFileContents: LOCK, ...options });
  py.FS.writeFile("/lib/pycore.zip", bytes(join(DIST, "pycore.zip")));      // as web/worker.js installs it
  return py;
}

test("the precompiled standard library covers every module the core's workloads load", async () => {
  const { workloadRequests } = await import("../../scripts/build_runtime.mjs?list-only");
  const py = await builtRuntime();
  py.runPython("import sys; sys.path.insert(0, '/lib/pycore.zip'); import pycore.api");
  assert.match(py.runPython("import json; json.__file__"), /^\/lib\/python314\.zip\/json\/__init__\.pyc$/);
  assert.match(py.runPython("import pycore.api; pycore.api.__file__"), /api\.pyc$/);
  // module and function docstrings are dropped, as python -OO drops them; class docstrings and asserts stay
  // (json.dumps, json.JSONDecoder and the core's _hf_config have docstrings in their source, and
  // ZipFile._fpclose begins with an assert)
  assert.deepEqual(py.runPython(`import dis, json, pycore.request.parse, zipfile
[json.__doc__ is None, json.dumps.__doc__ is None, pycore.request.parse._hf_config.__doc__ is None,
 json.JSONDecoder.__doc__ is not None,
 any(i.argrepr == 'AssertionError' for i in dis.get_instructions(zipfile.ZipFile._fpclose))]`).toJs(),
  [true, true, true, true, true]);
  const api = py.pyimport("pycore.api");
  for (const r of workloadRequests()) api.estimate(JSON.stringify(r));
  // every standard-library module loaded so far came from its precompiled .pyc: a new import by the
  // core shows up here until the list is rebuilt (it would still work, from source, more slowly)
  const fromSource = JSON.parse(py.runPython(`
import sys, json, zipimport
json.dumps(sorted(m.__name__ for m in list(sys.modules.values())
                  if isinstance(getattr(getattr(m, '__spec__', None), 'loader', None), zipimport.zipimporter)
                  and not (m.__spec__.origin or '').endswith('.pyc')))`));
  assert.deepEqual(fromSource, []);
  const list = JSON.parse(readFileSync(join(DIST, "pyodide", "modules.json"), "utf8"));
  assert.ok(list.modules.length > 100 && list.modules.includes("json/decoder.py"));
});

test("a module outside the precompiled list imports once the rest of the standard library is on the path", async () => {
  const py = await builtRuntime();
  assert.match(py.runPython("try:\n    import xml.dom.minidom\n    r = 'imported'\nexcept ImportError as e:\n    r = 'missing'\nr"), /missing/);
  py.FS.writeFile("/lib/stdlib-rest.zip", bytes(join(DIST, "pyodide", "stdlib-rest.zip")));
  py.runPython("import sys; sys.path.append('/lib/stdlib-rest.zip')");
  assert.equal(py.runPython("import xml.dom.minidom, argparse, statistics; xml.dom.minidom.parseString('<a/>').documentElement.tagName"), "a");
});

test("a memory snapshot made after importing the core restores with the same answers", async () => {
  const fresh = await builtRuntime({ _makeSnapshot: true });
  fresh.runPython("import sys; sys.path.insert(0, '/lib/pycore.zip'); import pycore.api");
  const requests = [{ model: "gpt2" }, { model: "llama-3.1-8b", workload: { mode: "lora" }, solve: true },
    { model: "qwen3-30b-a3b", workload: { mode: "serve", engine: "vllm", max_model_len: 8192 } }, { model: "nope" }];
  const before = requests.map((r) => fresh.pyimport("pycore.api").estimate(JSON.stringify(r)));
  const snap = fresh.makeMemorySnapshot();
  assert.ok(snap.length > 10 * 2 ** 20 && snap.length < 96 * 2 ** 20, `snapshot of ${snap.length} bytes`);
  const restored = await loadPyodide({ stdLibURL: STDLIB, lockFileContents: LOCK, _loadSnapshot: snap });
  // the file system is not part of the snapshot: the core's files come back from pycore.zip
  restored.FS.writeFile("/lib/pycore.zip", bytes(join(DIST, "pycore.zip")));
  const after = requests.map((r) => restored.pyimport("pycore.api").estimate(JSON.stringify(r)));
  assert.deepEqual(after, before);
});
