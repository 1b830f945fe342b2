// Load pyodide from node_modules and install pycore's source tree into its file system.
import { loadPyodide } from "pyodide";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

function copyTree(py, src, dst) {
  py.FS.mkdirTree(dst);
  for (const name of readdirSync(src)) {
    if (name === "__pycache__") continue;
    const s = join(src, name);
    if (statSync(s).isDirectory()) copyTree(py, s, `${dst}/${name}`);
    else if (/\.(py|json)$/.test(name)) py.FS.writeFile(`${dst}/${name}`, readFileSync(s));
  }
}

export async function pyodideWithCore() {
  const py = await loadPyodide();
  copyTree(py, join(ROOT, "pycore"), "/home/pyodide/pycore");
  py.runPython("import sys; sys.path.insert(0, '/home/pyodide'); import pycore.api");
  return py;
}
