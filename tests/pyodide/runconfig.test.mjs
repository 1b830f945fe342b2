// The config readers (pycore/runconfig, pycore/yamltext: issue 23) under Pyodide read the projects' own
// example configs into the same requests as under CPython, without PyYAML.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pyodideWithCore, ROOT } from "./load.mjs";

const DIR = join(ROOT, "tests", "data", "configs");
const TEXTS = readdirSync(DIR).filter((f) => /\.(ya?ml|json)$/.test(f)).sort()
  .map((f) => readFileSync(join(DIR, f), "utf8"))
  .concat(["a: &x 1\n", "a: [" + "[".repeat(200) + "]".repeat(200) + "]\n"]);
const SCRIPT = `
import json
from pycore.errors import InputError
from pycore.runconfig import read_run_config
def read_all(texts):
    out = []
    for t in texts:
        try:
            out.append(read_run_config(t))
        except InputError as e:
            out.append({"error": e.as_dict()})
    return json.dumps(out)
`;

test("the config readers give the same requests under Pyodide as under CPython", async () => {
  const py = await pyodideWithCore();
  py.runPython(SCRIPT);
  const got = JSON.parse(py.globals.get("read_all")(py.toPy(TEXTS)));
  const python = process.env.PYTHON || "python3";
  const want = JSON.parse(execFileSync(python, ["-c", SCRIPT + "\nimport sys\nprint(read_all(json.load(sys.stdin)))"],
    { cwd: ROOT, input: JSON.stringify(TEXTS) }).toString());
  assert.deepEqual(got, want);
  assert.equal(got.length, TEXTS.length);
  assert.ok(got.slice(0, -2).every((r) => r.kind && r.used.length), "every example config is read");
  assert.match(got.at(-2).error.message, /anchors/);
  assert.match(got.at(-1).error.message, /nested too deeply/);
});
