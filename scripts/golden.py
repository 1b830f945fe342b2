#!/usr/bin/env python3
"""Score the estimator against published figures: each check is a request, the result field that
answers it, the figure in bytes and its tolerance (tests/data/golden_*.json).

  python3 scripts/golden.py tests/data/golden_parallel.json [more files] [--markdown OUT.md]

Prints one line per check and ends with
  golden cases=N within_tol=K median_abs_err=X.X% max_abs_err=X.X% unsupported=U [fit=K/N verify=K/N]
and, for files whose checks carry a kind (tests/data/golden_serving.json), one such line per kind, and
for the multi-GPU references one line each for their fit part and their verify part.

Fit and verify (the rule, fixed before any formula was changed for issue 21): a check may name its
part ("part": "fit" or "verify"); otherwise a multi-GPU reference (its request has a parallelism) is
in the fit part when it is a torchtitan measurement (recipe fsdp2) on the Llama-3.1-8B model family
member llama-3.1-8b: the only cases a recipe's allowance may be tuned on (CP, loss and allocator
terms). Every other multi-GPU reference is in the verify part: the published formulas of DeepSpeed,
the ZeRO paper, Megatron and the Playbook (other frameworks), and torchtitan's 70B and 405B runs
(other models of the family, other layouts). A split by framework and model, not by outcome.
A check gives its figure as expected_bytes, or as expected with its unit (tokens, MiB, bpw, ...).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pycore.api import estimate_dict  # noqa: E402


FIT_RECIPES_AND_MODELS = {("fsdp2", "llama-3.1-8b")}
PART_LABELS = {"fit": "fit part (torchtitan runs on llama-3.1-8b)",
               "verify": "verify part (other frameworks' formulas; torchtitan 70B, 405B)"}


def part_of(check: dict) -> str:
    """'fit', 'verify', or '' for a reference outside the split (no parallelism in its request)."""
    if check.get("part"):
        return check["part"]
    req = check.get("request") or {}
    if "parallelism" not in req:
        return ""
    model = req.get("model")
    key = (req["parallelism"].get("recipe", "hf"), model if isinstance(model, str) else "")
    return "fit" if key in FIT_RECIPES_AND_MODELS else "verify"


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
            expected = c["expected_bytes"] if "expected_bytes" in c else c["expected"]
            row = {"id": c["id"], "expected": expected, "verbatim": c.get("verbatim", True), "kind": c.get("kind", ""),
                   "part": part_of(c)}
            if resp["status"] != "ok":
                row["error"] = f"{resp['errors'][0]['field']}: {resp['errors'][0]['message']}"
                rows.append(row)
                continue
            try:
                got = measure(resp["result"], c["measure"])
            except (KeyError, TypeError):
                row["error"] = f"the result has no {c['measure']}"
                rows.append(row)
                continue
            tol = c["tolerance"]
            row["got"] = got
            diff = abs(got - expected)
            row["err"] = diff / expected * 100 if expected else 0.0
            row["ok"] = diff <= max(tol["rel"] * expected, tol.get("abs_bytes", tol.get("abs", 0)))
            rows.append(row)
    return rows, unsupported


def summary(rows: list[dict], unsupported: int, label: str = "golden") -> str:
    errs = [r["err"] for r in rows if "err" in r]
    ok = sum(1 for r in rows if r.get("ok"))
    return (f"{label} cases={len(rows)} within_tol={ok} median_abs_err={statistics.median(errs) if errs else 0:.1f}% "
            f"max_abs_err={max(errs) if errs else 0:.1f}% unsupported={unsupported}")


def part_summaries(rows: list[dict]) -> list[str]:
    """One summary line for each part of the fit/verify split, fit first."""
    return [summary([r for r in rows if r.get("part") == k], 0, f"  {PART_LABELS[k]}:")
            for k in ("fit", "verify") if any(r.get("part") == k for r in rows)]


def closing_line(rows: list[dict], unsupported: int) -> str:
    """The overall summary with each part's score appended (a hook prints this last line)."""
    line = summary(rows, unsupported)
    for k in ("fit", "verify"):
        part = [r for r in rows if r.get("part") == k]
        if part:
            line += f" {k}={sum(1 for r in part if r.get('ok'))}/{len(part)}"
    return line


def kind_summaries(rows: list[dict]) -> list[str]:
    kinds = sorted({r["kind"] for r in rows if r.get("kind")})
    return [summary([r for r in rows if r.get("kind") == k], 0, f"  {k}:") for k in kinds]


def markdown(rows: list[dict], unsupported: int) -> str:
    out = ["| check | published (bytes) | estimated (bytes) | error | within tolerance |",
           "| --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['id']} | {r['expected']:.6g} | error: {r['error']} | | no |")
        else:
            out.append(f"| {r['id']} | {r['expected']:.6g} | {r['got']:.6g} | {r['err']:.2f}% | "
                       f"{'yes' if r['ok'] else 'no'} |")
    kinds = "".join(f"`{line.strip()}`\n\n" for line in kind_summaries(rows))
    return "\n".join(out) + f"\n\n{kinds}`{summary(rows, unsupported)}`\n"


BEGIN, END = "<!-- BEGIN GENERATED by scripts/golden.py --markdown -->", "<!-- END GENERATED golden -->"


def markers(section: str = "") -> tuple[str, str]:
    """The comments around a generated section of a page (one page may hold several)."""
    if not section:
        return BEGIN, END
    return (f"<!-- BEGIN GENERATED {section} by scripts/golden.py --markdown --section {section} -->",
            f"<!-- END GENERATED {section} -->")


def write_markdown(path: Path, text: str, section: str = "") -> None:
    """Write the table, or replace the generated section of an existing page."""
    BEGIN, END = markers(section)
    page = path.read_text(encoding="utf-8") if path.exists() else ""
    if BEGIN in page:
        head, rest = page.split(BEGIN, 1)
        page = f"{head}{BEGIN}\n{text}{END}{rest.split(END, 1)[1]}"
    else:
        page = f"{page}{BEGIN}\n{text}{END}\n"
    path.write_text(page, encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--markdown", metavar="OUT", help="also write the per-check table as Markdown to OUT ('-' = stdout)")
    ap.add_argument("--section", default="", help="name of the generated section of OUT to replace (default: the first)")
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
            write_markdown(Path(a.markdown), text, a.section)
    for line in kind_summaries(rows) + part_summaries(rows):
        print(line)
    print(closing_line(rows, unsupported))
    return 0


if __name__ == "__main__":
    sys.exit(main())
