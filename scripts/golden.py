#!/usr/bin/env python3
"""Score the estimator against published figures: each check is a request, the result field that
answers it, the figure in bytes and its tolerance (tests/data/golden_*.json).

  python3 scripts/golden.py tests/data/golden_parallel.json [more files] [--markdown OUT.md]

Prints one line per check and ends with
  golden cases=N within_tol=K median_abs_err=X.X% max_abs_err=X.X% unsupported=U
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pycore.api import estimate_dict  # noqa: E402


def measure(result: dict, path: str):
    node = result
    for key in path.split("."):
        node = node[key]
    return node


def run(paths: list[str]) -> tuple[list[dict], int]:
    rows, unsupported = [], 0
    for path in paths:
        for c in json.loads(Path(path).read_text(encoding="utf-8"))["checks"]:
            if "unsupported" in c:
                unsupported += 1
                continue
            resp = estimate_dict(c["request"])
            row = {"id": c["id"], "expected": c["expected_bytes"], "verbatim": c.get("verbatim", True)}
            if resp["status"] != "ok":
                row["error"] = f"{resp['errors'][0]['field']}: {resp['errors'][0]['message']}"
                rows.append(row)
                continue
            got = measure(resp["result"], c["measure"])
            tol = c["tolerance"]
            row["got"] = got
            diff = abs(got - c["expected_bytes"])
            row["err"] = diff / c["expected_bytes"] * 100 if c["expected_bytes"] else 0.0
            row["ok"] = diff <= max(tol["rel"] * c["expected_bytes"], tol["abs_bytes"])
            rows.append(row)
    return rows, unsupported


def summary(rows: list[dict], unsupported: int) -> str:
    errs = [r["err"] for r in rows if "err" in r]
    ok = sum(1 for r in rows if r.get("ok"))
    return (f"golden cases={len(rows)} within_tol={ok} median_abs_err={statistics.median(errs) if errs else 0:.1f}% "
            f"max_abs_err={max(errs) if errs else 0:.1f}% unsupported={unsupported}")


def markdown(rows: list[dict], unsupported: int) -> str:
    out = ["| check | published | estimated | error | within tolerance |", "| --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['id']} | {r['expected']:.6g} | error: {r['error']} | | no |")
        else:
            out.append(f"| {r['id']} | {r['expected']:.6g} | {r['got']:.6g} | {r['err']:.2f}% | "
                       f"{'yes' if r['ok'] else 'no'} |")
    return "\n".join(out) + f"\n\n`{summary(rows, unsupported)}`\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--markdown", metavar="OUT", help="also write the per-check table as Markdown to OUT ('-' = stdout)")
    a = ap.parse_args(argv)
    rows, unsupported = run(a.files)
    for r in rows:
        if "error" in r:
            print(f"{r['id']:70s} ERROR {r['error']}")
        else:
            print(f"{r['id']:70s} expected={r['expected']:16.6g} got={r['got']:16.6g} err={r['err']:6.2f}% "
                  f"{'ok' if r['ok'] else 'MISS'}")
    if a.markdown:
        text = markdown(rows, unsupported)
        if a.markdown == "-":
            print(text)
        else:
            Path(a.markdown).write_text(text, encoding="utf-8")
    print(summary(rows, unsupported))
    return 0


if __name__ == "__main__":
    sys.exit(main())
