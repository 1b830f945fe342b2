"""The page's first answer waits for `import pycore.api` and one estimate (issue 11): the searches
(pycore.plan), the measured-log checker (pycore.check) and the serving engines load only when a request
asks for them. Run in a fresh interpreter, so that other tests' imports do not count."""

import json
import subprocess
import sys

_PROBE = """
import json, sys
import pycore.api
print(json.dumps(sorted(m for m in sys.modules if m.startswith('pycore.'))))
pycore.api.estimate(json.dumps(%s))
print(json.dumps(sorted(m for m in sys.modules if m.startswith('pycore.'))))
"""


def _loaded(request: dict) -> tuple[list, list]:
    out = subprocess.run([sys.executable, "-c", _PROBE % repr(request)], capture_output=True, text=True, check=True)
    at_import, after = (json.loads(line) for line in out.stdout.splitlines())
    return at_import, after


def test_an_estimate_loads_no_search_checker_or_engine():
    at_import, after = _loaded({"model": "llama-3.1-8b", "workload": {"mode": "lora"}, "gpu": "rtx-4090-24gb"})
    for modules in (at_import, after):
        assert not [m for m in modules if m.startswith(("pycore.plan", "pycore.check.", "pycore.serving.vllm",
                                                        "pycore.serving.sglang", "pycore.serving.llamacpp"))]


def test_a_search_loads_its_module_on_first_use():
    _, after = _loaded({"model": "llama-3.1-8b", "workload": {"mode": "lora"}, "gpu": "rtx-4090-24gb",
                        "solve": True, "fit": {"limit": 2}})
    assert {"pycore.plan.fit", "pycore.plan.solve", "pycore.training.explain"} <= set(after)


def test_the_core_never_loads_the_integrations_or_their_libraries():
    """Issue 23: the pre-flight integrations import their libraries inside their own modules; an estimate
    (and the commands and config readers it uses) loads none of them."""
    probe = ("import json, sys, pycore.api, pycore.runconfig, pycore.cli\n"
             "pycore.api.estimate(json.dumps({'model': 'llama-3.1-8b', 'fit': {'limit': 1}, "
             "'gpu': 'rtx-4090-24gb'}))\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'peft', "
             "'accelerate', 'lightning', 'yaml') or m.startswith('pycore.integrations'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_the_page_bundle_leaves_the_integrations_out(tmp_path):
    import zipfile
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, str(root / "scripts" / "bundle_core.py"), str(tmp_path)], check=True)
    names = zipfile.ZipFile(tmp_path / "pycore.zip").namelist()
    assert "pycore/api.py" in names and "pycore/runconfig/yamltext.py" in names and "pycore/commands/hf.py" in names
    assert not [n for n in names if n.startswith("pycore/integrations")]
