#!/usr/bin/env python3
"""Write pycore as a zip (for Pyodide's unpackArchive) and the pickers' catalog.json into OUT_DIR.

  python3 scripts/bundle_core.py OUT_DIR
"""

import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pycore.api import catalog  # noqa: E402

# The pre-flight integrations import torch, transformers, accelerate or Lightning: the page never loads them.
NOT_BUNDLED = ("integrations",)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in (ROOT / "pycore").rglob("*") if p.suffix in (".py", ".json") and "__pycache__" not in p.parts
                   and p.relative_to(ROOT / "pycore").parts[0] not in NOT_BUNDLED)
    with zipfile.ZipFile(out / "pycore.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for p in files:
            info = zipfile.ZipInfo(str(p.relative_to(ROOT)), date_time=(2020, 1, 1, 0, 0, 0))   # reproducible
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, p.read_bytes())
    (out / "catalog.json").write_text(catalog(), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
