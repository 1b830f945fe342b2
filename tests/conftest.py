import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the shared folder beside the checkout (ROOT.parent), or beside a git worktree's folder
SHARED = next((p for p in (ROOT.parent / "shared", ROOT.parent.parent / "shared") if p.exists()),
              ROOT / "absent") / "calibration" / "h100-hf-transformers.jsonl"


def load_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def shared_records():
    if not SHARED.exists():
        pytest.skip("shared/calibration is not beside this checkout")
    return load_records(SHARED)


def load_script(name: str):
    """scripts/NAME.py as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def calibrate():
    """scripts/calibrate.py as a module, loaded once."""
    return load_script("calibrate")


@pytest.fixture(scope="session")
def golden():
    """scripts/golden.py as a module, loaded once."""
    return load_script("golden")


@pytest.fixture(scope="session")
def shared_run(calibrate):
    """calibrate.run over the shared calibration, once a session: (rows, summary). Read, never changed."""
    if not SHARED.exists():
        pytest.skip("shared/calibration is not beside this checkout")
    return calibrate.run([str(SHARED)])
