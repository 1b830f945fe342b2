"""`pip install` from the repository: the wheel built here holds the core, its data files and the
integrations, and installs the `gpu-mem` command, which answers as the checkout does."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    pytest.importorskip("setuptools", reason="the wheel is built without build isolation (no network)")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"               # a copy, so that the build leaves nothing in the checkout
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "pycore", src / "pycore", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(src)], check=True, capture_output=True)
    wheel = next(dist.glob("*.whl"))
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    return wheel, target


def test_the_wheel_is_named_for_what_it_is_and_holds_the_data(installed):
    wheel, _ = installed
    assert wheel.name.startswith("gpu_memory_planner-")
    names = zipfile.ZipFile(wheel).namelist()
    data = sorted(p.name for p in (ROOT / "pycore" / "data").glob("*.json"))
    assert data and all(f"pycore/data/{name}" in names for name in data)
    assert "pycore/integrations/transformers.py" in names and "pycore/runconfig/yamltext.py" in names


def test_the_installed_command_answers_as_the_checkout_does(installed, tmp_path):
    _, target = installed
    env = {**os.environ, "PYTHONPATH": str(target)}
    flags = ["estimate", "--model", "llama-3.2-1b", "--mode", "full", "--batch", "4", "--seq", "2048", "--json"]
    out = subprocess.run([str(target / "bin" / "gpu-mem"), *flags], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True)
    where = subprocess.run([sys.executable, "-c", "import pycore; print(pycore.__file__)"], cwd=tmp_path, env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert where.startswith(str(target))              # the installed copy answered, not the checkout
    here = subprocess.run([sys.executable, "-m", "pycore", *flags], cwd=ROOT, check=True, capture_output=True,
                          text=True)
    assert json.loads(out.stdout)["peak_allocated_bytes"] == json.loads(here.stdout)["peak_allocated_bytes"]
