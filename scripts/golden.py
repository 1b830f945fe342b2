#!/usr/bin/env python3
"""Score the estimator against published figures: each check is a request, the result field that
answers it, the figure in bytes and its tolerance (tests/data/golden_*.json).

  python3 scripts/golden.py tests/data/golden_parallel.json [more files] [--markdown OUT.md]
  python3 scripts/golden.py records.jsonl      # records written by `python -m pycore check --engine-log LOG --record`

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
Serving checks are split into a fit part and a verify part by the rule in serving_part (engine version
and model family, decided before any constant was fitted); for them the last two lines are
  fit cases=... and verify cases=...
A check gives its figure as expected_bytes, or as expected with its unit (tokens, MiB, bpw, ...).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pycore.api import estimate_dict  # noqa: E402
from generated import replace_between  # noqa: E402


# The fit/verify split of the serving references (issue 20). Constants may be fitted on the fit part
# only; the verify part is the evidence. A check is in the verify part when its engine version is at or
# after the engine's cutoff (newer engines than the ones fitted on), or when its model belongs to a
# held-out family; checks without an engine version (HF generate, the quantize table) are in the fit
# part unless their family is held out. The rule reads only the request, never the score.
VERIFY_FROM = {"vllm": (0, 11, 0), "sglang": (0, 5, 0), "llamacpp": (6000,)}
HELD_OUT_FAMILIES = ("gemma", "mistral", "phi")


def _version(engine: str, text: str) -> tuple:
    if engine == "llamacpp":
        return (int(text.lstrip("b")),)
    return tuple(int("".join(ch for ch in part if ch.isdigit()) or 0) for part in text.split(".")[:3])


def _model_name(request: dict) -> str:
    model = request.get("model", "")
    if isinstance(model, dict):
        model = json.dumps(model)
    return str(model).lower()


def serving_part(check: dict) -> str:
    """'fit' or 'verify' for a serving check (one carrying a workload engine), '' for other files."""
    work = check.get("request", {}).get("workload", {})
    engine, version = work.get("engine"), work.get("version")
    if work.get("mode") != "serve" and check.get("kind") != "measured (transformers)":
        return ""
    if any(family in _model_name(check["request"]) for family in HELD_OUT_FAMILIES):
        return "verify"
    if engine in VERIFY_FROM and version and _version(engine, version) >= VERIFY_FROM[engine]:
        return "verify"
    return "fit"


FIT_RECIPES_AND_MODELS = {("fsdp2", "llama-3.1-8b")}
PART_LABELS = {"fit": "fit part (torchtitan runs on llama-3.1-8b)",
               "verify": "verify part (other frameworks' formulas; torchtitan 70B, 405B)"}


def part_of(check: dict) -> str:
    """'fit', 'verify', or '' for a reference outside the split (no parallelism in its request)."""
    if check.get("part"):
        return check["part"]
    if serving_part(check):
        return serving_part(check)
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


def _checks(path: Path) -> list[dict]:
    """A references file's checks; a .jsonl file holds one check a line (``check --engine-log --record``)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)["checks"]


def run(paths: list[str]) -> tuple[list[dict], int]:
    rows, unsupported = [], 0
    for path in paths:
        for c in _checks(Path(path)):
            if "unsupported" in c:
                unsupported += 1
                continue
            resp = estimate_dict(c["request"])
            expected = c["expected_bytes"] if "expected_bytes" in c else c["expected"]
            row = {"id": c["id"], "expected": expected, "verbatim": c.get("verbatim", True), "kind": c.get("kind", ""),
                   "part": part_of(c), "serving": bool(serving_part(c)), "measure": c["measure"],
                   "engine": c["request"].get("workload", {}).get("engine", "")}
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
    """One summary line for each part of the multi-GPU references' fit/verify split, fit first."""
    rows = [r for r in rows if not r.get("serving")]
    return [summary([r for r in rows if r.get("part") == k], 0, f"  {PART_LABELS[k]}:")
            for k in ("fit", "verify") if any(r.get("part") == k for r in rows)]


def closing_line(rows: list[dict], unsupported: int) -> str:
    """The overall summary with each part's score appended (a hook prints this last line)."""
    line = summary(rows, unsupported)
    for k in ("fit", "verify"):
        part = [r for r in rows if r.get("part") == k and not r.get("serving")]
        if part:
            line += f" {k}={sum(1 for r in part if r.get('ok'))}/{len(part)}"
    return line


def kind_summaries(rows: list[dict]) -> list[str]:
    kinds = sorted({r["kind"] for r in rows if r.get("kind")})
    return [summary([r for r in rows if r.get("kind") == k], 0, f"  {k}:") for k in kinds]


def split_summaries(rows: list[dict]) -> list[str]:
    """One summary line per part (fit, verify) of the serving checks, else none."""
    rows = [r for r in rows if r.get("serving")]
    if not rows:
        return []
    return [f"{summary([r for r in rows if r.get('part') == part], 0, part)} {_bar([r for r in rows if r.get('part') == part])}"
            for part in ("fit", "verify")]


def _bar(rows: list[dict]) -> str:
    """Issue 20's bar: vLLM and SGLang KV tokens within 2% (all, and end-to-end predictions alone);
    llama.cpp buffers (model, KV, compute) within 5%."""
    def share(sel, pct):
        sel = [r for r in sel if "err" in r]
        return f"{sum(1 for r in sel if r['err'] <= pct)}/{len(sel)}"
    kv = [r for r in rows if r["engine"] in ("vllm", "sglang") and r["id"] and r.get("measure") == "kv_cache_tokens"]
    buffers = [r for r in rows if r["engine"] == "llamacpp" and ("buffer" in r.get("measure", "") or
                                                                 r.get("measure") == "report.kv_bytes")]
    return (f"kv_tokens_within_2%={share(kv, 2.0)} end_to_end={share([r for r in kv if r['kind'] == 'end-to-end'], 2.0)} "
            f"llamacpp_buffers_within_5%={share(buffers, 5.0)}")


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
    parts = "".join(f"\n`{line}`\n" for line in split_summaries(rows))
    return "\n".join(out) + f"\n\n{kinds}`{summary(rows, unsupported)}`\n{parts}"


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
        page = replace_between(page, BEGIN, END, text)
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
    for line in split_summaries(rows):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
