import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "calibration" / "h100-hf-transformers.jsonl"


def load_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def shared_records():
    if not SHARED.exists():
        pytest.skip("shared/calibration is not beside this checkout")
    return load_records(SHARED)
