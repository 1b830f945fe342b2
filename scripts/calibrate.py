#!/usr/bin/env python3
"""Compare estimates with measured peaks in calibration files (shared/calibration format).

  python3 scripts/calibrate.py FILE.jsonl [FILE.jsonl ...] [--markdown OUT.md] [--bands OUT.json]

Each model is built from the record's ``hf_config`` (never its id), so any file in the
same format can be checked. Prints one row per case and ends with the summary line.

--bands writes the error bands every answer carries (pycore/data/error_bands.json): for each class
of run (mode, model family, attention kernel) the 90th-percentile error of the device total over the
measured runs of that class, and for the multi-GPU recipes and serving engines the errors over their
reference files (tests/data/golden_*.json).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pycore.api import estimate_dict  # noqa: E402
from generated import replace_between  # noqa: E402
from pycore.units import GiB  # noqa: E402
from pycore.check.record import request_from_record  # noqa: E402


def request_for(rec: dict) -> dict:
    return request_from_record(rec)


def rules_of_thumb(rec: dict, result: dict) -> dict:
    """The common estimates, for comparison: 4x weights (Adam training), 1.2x weights (inference),
    and parameters + gradients + optimizer + textbook activations (Korthikanti et al. 2022, eq. 2:
    s*b*h*(34 + 5*a*s/h) bytes per layer, 16-bit, no recomputation)."""
    w, m = rec["workload"], result["model"]
    p = result["params"]["total"]
    wbytes = {"fp32": 4, "bf16": 2, "fp16": 2}[w["weights_dtype"]]
    weights = p * wbytes
    if w["mode"] == "inference":
        return {"rule_4x_or_1.2x": int(1.2 * weights), "textbook": int(1.2 * weights)}
    trainable = result["params"]["trainable"]
    tb = 4 if (w["weights_dtype"] == "fp32") else wbytes
    opt = {"adamw": 2, "adamw_fused": 2, "sgd": 0, "sgd_momentum": 1, "adafactor": 0}.get(w.get("optimizer"), 2)
    s, b, h, L = w["seq_len"], w["batch_size"], m["hidden_size"], m["n_layers"]
    a = rec["hf_config"].get("num_attention_heads") or rec["hf_config"].get("n_head") or 1
    acts = L * s * b * h * (34 + 5 * a * s / h) if not w.get("gradient_checkpointing") else L * s * b * h * 2
    textbook = weights + trainable * tb * (1 + opt) + int(acts)
    return {"rule_4x_or_1.2x": 4 * weights, "textbook": textbook}


def load_records(paths: list[str]) -> list[dict]:
    recs = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            recs.extend(json.loads(line) for line in fh if line.strip())
    return recs


def run(paths: list[str], alloc_conf: str = "") -> tuple[list[dict], dict]:
    return run_records(load_records(paths), alloc_conf)


def run_records(recs: list[dict], alloc_conf: str = "") -> tuple[list[dict], dict]:
    rows = []
    for rec in recs:
        req = request_for(rec)
        if alloc_conf:      # the caching allocator's replay (pycore/training/caching.py)
            req["framework"] = {**req.get("framework", {}), "alloc_conf": alloc_conf}
        resp = estimate_dict(req)
        if resp["status"] != "ok":
            rows.append({"id": rec.get("id", "?"), "error": resp["errors"][0]})
            continue
        res = resp["result"]
        meas = rec["measured"]
        row = {"id": rec.get("id", "?"), "status": meas["status"], "measured": meas.get("peak_allocated_bytes"),
               "estimated": res["peak_allocated_bytes"], "phase": res["peak_phase"], "fits": res["fits"],
               "device_total": res["device_total_bytes"], "mode": rec["workload"]["mode"],
               "band_class": res.get("error_band", {}).get("class", ""), "verdict": res["verdict"],
               "family": cv_family(rec), "bands": res["bands"], "quantities": measured_quantities(meas),
               "record": rec, "alloc_conf": alloc_conf}
        est_base = res["params"]["total"]
        # measure_hf.py counts parameters before get_peft_model: n_params is the base model's,
        # and the adapters are n_trainable.
        # A record without counts (a user's checked run) has nothing to compare them with.
        row["param_ok"] = "n_params" not in meas or (est_base == meas["n_params"] and (
            rec["workload"]["mode"] not in ("lora", "qlora") or res["params"]["adapters"] == meas.get("n_trainable")))
        if meas.get("peak_reserved_bytes") and meas.get("cuda_context_bytes"):
            row["measured_device"] = meas["peak_reserved_bytes"] + meas["cuda_context_bytes"]
        row.update(rules_of_thumb(rec, res))
        rows.append(row)
    ok = [r for r in rows if r.get("status") == "ok"]
    errs = [abs(r["estimated"] - r["measured"]) / r["measured"] * 100 for r in ok]
    dev = [abs(r["device_total"] - r["measured_device"]) / r["measured_device"] * 100 for r in ok if "measured_device" in r]
    summary = {
        "cases": len(ok),
        "median": statistics.median(errs) if errs else 0.0,
        "p90": _quantile(errs, 0.9),
        "max": max(errs) if errs else 0.0,
        "under_5pct": sum(1 for r in ok if r["estimated"] < 0.95 * r["measured"]),
        "param_mismatch": sum(1 for r in rows if "error" not in r and not r["param_ok"]),
        "oom_missed": sum(1 for r in rows if r.get("status") == "oom" and r["fits"]),
        "oom_not_does_not_fit": sum(1 for r in rows if r.get("status") == "oom" and r["verdict"] != "does not fit"),
        "oom_runs": sum(1 for r in rows if r.get("status") == "oom"),
        "at_risk_ok": sum(1 for r in ok if r["verdict"] == "at risk"),
        "does_not_fit_ok": sum(1 for r in ok if r["verdict"] == "does not fit"),
        "fits_verdict_disagree": sum(1 for r in rows if "error" not in r and r["fits"] != (r["verdict"] == "fits")),
        "errors": sum(1 for r in rows if "error" in r),
        "device_median": statistics.median(dev) if dev else 0.0,
        "device_within_10pct": sum(1 for d in dev if d <= 10.0), "device_cases": len(dev),
    }
    for rule in ("rule_4x_or_1.2x", "textbook"):
        e = [abs(r[rule] - r["measured"]) / r["measured"] * 100 for r in ok]
        summary[rule] = statistics.median(e) if e else 0.0
    return rows, summary


def cv_family(rec: dict) -> str:
    """The family a run is held out with: model family x mode x attention kernel."""
    w = rec["workload"]
    return f"{rec['hf_config'].get('model_type', '?')} x {w['mode']} x {w.get('attention', 'sdpa')}"


def measured_quantities(meas: dict) -> dict:
    """The measured value of each banded quantity the record has."""
    out = {}
    if meas.get("peak_allocated_bytes"):
        out["peak_allocated"] = meas["peak_allocated_bytes"]
    if meas.get("peak_reserved_bytes"):
        out["reserved"] = meas["peak_reserved_bytes"]
        if meas.get("cuda_context_bytes"):
            out["device_total"] = meas["peak_reserved_bytes"] + meas["cuda_context_bytes"]
    return out


def _quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (the value below which a fraction q of the cases lie)."""
    if not values:
        return 0.0
    s = sorted(values)
    k = max(0, min(len(s) - 1, -(-int(q * len(s) * 1000) // 1000) - 1))
    return s[k]


def markdown(rows: list[dict], summary: dict) -> str:
    out = ["| case | status | measured GiB | estimated GiB | error | phase of peak | 4x / 1.2x rule | textbook |",
           "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['id']} | error | | | | {r['error']['message']} | | |")
            continue
        meas = r["measured"]
        err = (r["estimated"] - meas) / meas * 100
        rule = (r["rule_4x_or_1.2x"] - meas) / meas * 100
        text = (r["textbook"] - meas) / meas * 100
        out.append(f"| {r['id']} | {r['status']} | {meas / GiB:.2f} | {r['estimated'] / GiB:.2f} | {err:+.1f}% | "
                   f"{r['phase']} | {rule:+.0f}% | {text:+.0f}% |")
    s = summary
    out.append("")
    out.append(f"Over {s['cases']} measured cases: median absolute error {s['median']:.1f}%, 90th percentile "
               f"{s['p90']:.1f}%, largest {s['max']:.1f}%; {s['under_5pct']} cases estimated more than 5% low; "
               f"{s['oom_missed']} out-of-memory runs predicted to fit. The 4x/1.2x rules of thumb miss by "
               f"{s['rule_4x_or_1.2x']:.0f}% (median) and the textbook sum by {s['textbook']:.0f}%.")
    return "\n".join(out) + "\n" + BANDS_SPLIT + bands_markdown(rows, summary)


def bands_markdown(rows: list[dict], s: dict) -> str:
    """The bands' coverage, fitted on every run and on each family left out in turn, and the verdicts."""
    cv = cross_validate(rows)
    out = ["| quantity | fit on all runs: inside | median half-width | held out by family: inside | median half-width |",
           "| --- | ---: | ---: | ---: | ---: |"]
    for q, parts in cv.items():
        f, h = parts["fit"], parts["held_out"]
        out.append(f"| {q} | {f['covered']}/{f['runs']} ({f['coverage_pct']:.0f}%) | {f['median_half_width_pct']:.1f}% | "
                   f"{h['covered']}/{h['runs']} ({h['coverage_pct']:.0f}%) | {h['median_half_width_pct']:.1f}% |")
    out.append("")
    for q, parts in cv.items():
        missed = parts["held_out"]["missed"]
        out.append(f"- {q}, held out and outside their band: {', '.join(missed) if missed else 'none'}")
    out.append("")
    out.append(f"Verdicts on the same runs: {s['oom_runs'] - s['oom_not_does_not_fit']} of {s['oom_runs']} "
               f"out-of-memory runs \"does not fit\"; {s['at_risk_ok']} of {s['cases']} runs that worked \"at risk\", "
               f"{s['does_not_fit_ok']} \"does not fit\"; `fits` and `verdict` disagree on {s['fits_verdict_disagree']}.")
    return "\n".join(out) + "\n"


BEGIN, END = "<!-- BEGIN GENERATED by scripts/calibrate.py --markdown -->", "<!-- END GENERATED -->"
BANDS_BEGIN = "<!-- BEGIN GENERATED bands by scripts/calibrate.py --markdown -->"
BANDS_SPLIT = "\n<!-- bands -->\n"        # between the per-case table and the bands' coverage in markdown()


def write_markdown(path: Path, text: str) -> None:
    """Write the table, or replace the generated sections of an existing page (the per-case table, and
    the bands' coverage where the page has a section for it)."""
    page = path.read_text(encoding="utf-8") if path.exists() else ""
    cases, _, bands_text = text.partition(BANDS_SPLIT)
    if BEGIN not in page:
        path.write_text(cases + "\n" + bands_text, encoding="utf-8")
        return
    if BANDS_BEGIN in page:
        page = replace_between(page, BANDS_BEGIN, END, bands_text)
    else:
        cases += "\n" + bands_text
    path.write_text(replace_between(page, BEGIN, END, cases), encoding="utf-8")


def bands(rows: list[dict], golden_paths: list[str]) -> dict:
    """Error bands by class, from the measured runs (device totals) and the reference files."""
    from pycore.accuracy.bands import CLASS_LEVELS, class_levels
    ok = [r for r in rows if r.get("status") == "ok" and "measured_device" in r]
    out = {"source": "scripts/calibrate.py --bands, from the calibration files and tests/data/golden_*.json",
           "single_gpu": {}, "references": {}}
    groups: dict = {}
    for r in ok:
        err = abs(r["device_total"] - r["measured_device"]) / r["measured_device"] * 100
        for level in class_levels(r["band_class"]):
            groups.setdefault(level, []).append(err)
    for key, errs in sorted(groups.items()):
        out["single_gpu"][key] = {"runs": len(errs), "p90_pct": round(_quantile(errs, 0.9), 2),
                                  "median_pct": round(statistics.median(errs), 2)}
    if golden_paths:
        import importlib.util
        spec = importlib.util.spec_from_file_location("golden", Path(__file__).resolve().parent / "golden.py")
        golden = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(golden)
        grows, _ = golden.run(golden_paths)
        by_kind: dict = {}
        for r in grows:
            if "err" in r:
                by_kind.setdefault(r.get("kind") or "", []).append(r["err"])
        for kind, errs in sorted(by_kind.items()):
            out["references"][kind] = {"checks": len(errs), "p90_pct": round(_quantile(errs, 0.9), 2),
                                       "median_pct": round(statistics.median(errs), 2)}
    out["levels"] = list(CLASS_LEVELS)
    out["quantities"] = fit_quantity_bands(rows)
    return out


def _fractions(rows: list[dict], q: str) -> list[float]:
    out = []
    for r in rows:
        band, meas = r["bands"][q], r["quantities"].get(q)
        if meas is not None and band.get("scale_bytes"):
            out.append((meas - band["estimate_bytes"]) / band["scale_bytes"])
    return out


def fit_quantity_bands(rows: list[dict]) -> dict:
    """For the allocated peak and the reserve, at each class level (pycore/accuracy/verdicts.py): the largest
    error of that quantity, either way, as a fraction of what it grows with, over the measured runs of that
    level, and how many model families they come from (a level needs MIN_FAMILIES). The band is symmetric: a family the band has not seen may err either way (held-out coverage of
    the device total: 33/44 inside asymmetric bands of the other families' lowest and highest errors, 39/44
    inside symmetric ones). For the context outside the allocator: its lowest and highest error in bytes
    over every run (it does not grow with the step); the device total's band is the reserve's plus it."""
    from pycore.accuracy.verdicts import FITTED_QUANTITIES, levels
    out: dict = {}
    for q in FITTED_QUANTITIES:
        groups: dict = {}
        for r in rows:
            if r.get("status") == "ok" and "bands" in r and q in r["quantities"]:
                for level in levels(r["bands"][q]["class"]):
                    groups.setdefault(level, []).append(r)
        out[q] = {}
        for level, members in sorted(groups.items()):
            f = _fractions(members, q)
            m = math.ceil(max([0.0, *(abs(x) for x in f)]) * 1e4) / 1e4
            families = len({r["record"]["hf_config"].get("model_type", "?") for r in members})
            out[q][level] = {"runs": len(members), "families": families, "low": -m, "high": m}
    errs = [context_error(r) for r in rows if r.get("status") == "ok" and "bands" in r]
    errs = [e for e in errs if e is not None]
    if errs:
        out["context"] = {"runs": len(errs), "low": min(errs), "high": max(errs)}
    return out


def context_error(row: dict) -> int | None:
    """Measured minus estimated memory outside the allocator (the CUDA context), in bytes."""
    meas, b = row["record"]["measured"] if "record" in row else {}, row["bands"]
    if not meas.get("cuda_context_bytes"):
        return None
    return meas["cuda_context_bytes"] - (b["device_total"]["estimate_bytes"] - b["reserved"]["estimate_bytes"])


def _coverage(rows: list[dict], table_for, q: str) -> dict:
    """Whether each run's measured quantity lies in the band the table gives it; the median half-width."""
    from pycore.accuracy.verdicts import band_edges
    inside, widths, missed = 0, [], []
    runs = [r for r in rows if r.get("status") == "ok" and q in r["quantities"]]
    for r in runs:
        low, high = band_edges(r["bands"], table_for(r))[q]
        if low <= r["quantities"][q] <= high:
            inside += 1
        else:
            missed.append(r["id"])
        widths.append((high - low) / 2 / r["bands"][q]["estimate_bytes"] * 100)
    return {"runs": len(runs), "covered": inside, "coverage_pct": 100 * inside / len(runs) if runs else 0.0,
            "median_half_width_pct": statistics.median(widths) if widths else 0.0, "missed": missed}


# The allocator's reserve shares (pycore/training/allocator.py) are fitted here: for each measured run, the
# share of its kind that makes the estimated reserve equal the measured one (found by bisection, the other
# shares held at their committed values); each kind's share is the median over its runs, to 3 decimals.
SHARE_CONSTANTS = {"training": "SLACK_TRAINING", "checkpointing": "SLACK_CHECKPOINTING",
                   "recompute_frozen": "SLACK_RECOMPUTE_FROZEN", "inference": "SLACK_INFERENCE"}
SHARE_SEARCH_MAX = 4.0         # a share above 4x the churn is not a share any run has needed (largest: 3.0)
SHARE_BISECTIONS = 20


def share_kind(rec: dict) -> str:
    """Which of the allocator's shares a run's reserve is fitted with (allocator.reserve_kind)."""
    from pycore.training.allocator import reserve_kind
    w = rec["workload"]
    return reserve_kind(w["mode"] != "inference", bool(w.get("gradient_checkpointing")), w["mode"] == "full")


@contextmanager
def reserve_shares(values: dict):
    """Estimates made inside take these shares (kind -> fraction) instead of the committed ones."""
    from pycore.training import allocator
    old = {kind: getattr(allocator, name) for kind, name in SHARE_CONSTANTS.items()}
    for kind, v in values.items():
        setattr(allocator, SHARE_CONSTANTS[kind], v)
    try:
        yield
    finally:
        for kind, v in old.items():
            setattr(allocator, SHARE_CONSTANTS[kind], v)


def committed_shares() -> dict:
    from pycore.training import allocator
    return {kind: getattr(allocator, name) for kind, name in SHARE_CONSTANTS.items()}


def ideal_share(rec: dict) -> float | None:
    """The share of the run's kind under which its estimated reserve equals the measured one."""
    meas, kind, req = rec["measured"], share_kind(rec), request_for(rec)
    target = meas.get("peak_reserved_bytes")
    if meas.get("status") != "ok" or not target:
        return None

    def reserved(x: float) -> int:
        with reserve_shares({kind: x}):
            resp = estimate_dict(req)
        return resp["result"]["reserved_bytes"] if resp["status"] == "ok" else -1

    lo, hi = 0.0, SHARE_SEARCH_MAX
    at_zero = reserved(lo)
    if at_zero < 0:
        return None
    if at_zero >= target:
        return lo
    if reserved(hi) <= target:
        return hi
    for _ in range(SHARE_BISECTIONS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if reserved(mid) < target else (lo, mid)
    return (lo + hi) / 2


def fit_shares(recs: list[dict], ideal: dict) -> dict:
    """Each kind's share: the median of its runs' ideal shares; a kind without runs keeps the committed one."""
    by_kind: dict = {}
    for rec in recs:
        if ideal.get(rec["id"]) is not None:
            by_kind.setdefault(share_kind(rec), []).append(ideal[rec["id"]])
    return {**committed_shares(), **{k: round(statistics.median(v), 3) for k, v in by_kind.items()}}


def cross_validate(rows: list[dict]) -> dict:
    """Coverage of the bands on the runs they were fitted on, and on each family left out in turn
    (model family x mode x kernel). For a held-out family everything fitted is fitted without it: the
    reserve's shares (fit_shares), then the bands (fit_quantity_bands) on the other families' runs
    estimated with those shares; its own runs are estimated with the same shares."""
    from pycore.accuracy.verdicts import QUANTITIES
    ok = [r for r in rows if r.get("status") == "ok" and "bands" in r]
    full = fit_quantity_bands(ok)
    recs = [r["record"] for r in rows if "record" in r]
    alloc_conf = next((r["alloc_conf"] for r in rows if "record" in r), "")
    ideal = {rec["id"]: ideal_share(rec) for rec in recs}
    held_rows, held_bands = [], {}
    for fam in sorted({r["family"] for r in ok}):
        with reserve_shares(fit_shares([rec for rec in recs if cv_family(rec) != fam], ideal)):
            refit, _ = run_records(recs, alloc_conf)
        refit_ok = [r for r in refit if r.get("status") == "ok" and "bands" in r]
        held_bands[fam] = fit_quantity_bands([r for r in refit_ok if r["family"] != fam])
        held_rows += [r for r in refit_ok if r["family"] == fam]
    return {q: {"fit": _coverage(ok, lambda r: full, q),
                "held_out": _coverage(held_rows, lambda r: held_bands[r["family"]], q)} for q in QUANTITIES}


def print_cross_validation(cv: dict) -> None:
    families = "model family x mode x kernel"
    for q, parts in cv.items():
        f, h = parts["fit"], parts["held_out"]
        print(f"band {q:15s} fit: {f['covered']}/{f['runs']} = {f['coverage_pct']:.0f}% inside, median half-width "
              f"{f['median_half_width_pct']:.1f}% | held out ({families}): {h['covered']}/{h['runs']} = "
              f"{h['coverage_pct']:.0f}% inside, median half-width {h['median_half_width_pct']:.1f}%")
        print(f"  held out, outside: {' '.join(h['missed']) or 'none'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--markdown", metavar="OUT", help="also write the per-case table as Markdown to OUT ('-' = stdout)")
    ap.add_argument("--bands", metavar="OUT", help="also write the error bands (pycore/data/error_bands.json)")
    ap.add_argument("--golden", nargs="*", default=[], help="reference files scored into the bands")
    ap.add_argument("--alloc-conf", default="", help="framework.alloc_conf for every run: the reserve from the "
                    "caching allocator's replay (e.g. expandable_segments:False for torch's defaults)")
    a = ap.parse_args(argv)
    rows, s = run(a.files, a.alloc_conf)
    if a.bands:
        Path(a.bands).write_text(json.dumps(bands(rows, a.golden), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    for r in rows:
        if "error" in r:
            print(f"{r['id']:46s} ERROR {r['error']['field']}: {r['error']['message']}")
            continue
        err = (r["estimated"] - r["measured"]) / r["measured"] * 100
        print(f"{r['id']:46s} {r['status']:4s} measured={r['measured'] / GiB:7.2f} GiB estimated={r['estimated'] / GiB:7.2f} GiB "
              f"err={err:+6.1f}% phase={r['phase']}{'' if r['param_ok'] else ' PARAMS-MISMATCH'}")
    if a.markdown:
        text = markdown(rows, s)
        if a.markdown == "-":
            print(text.replace(BANDS_SPLIT, "\n"))
        else:
            write_markdown(Path(a.markdown), text)
    print(f"device_total: median_abs_err={s['device_median']:.1f}% within_10pct={s['device_within_10pct']}/{s['device_cases']} "
          f"(vs peak_reserved + cuda_context); rules of thumb median_abs_err: 4x/1.2x={s['rule_4x_or_1.2x']:.1f}% "
          f"textbook={s['textbook']:.1f}%")
    print_cross_validation(cross_validate(rows))
    print(f"verdicts: oom_runs={s['oom_runs']} oom_not_does_not_fit={s['oom_not_does_not_fit']} at_risk_ok="
          f"{s['at_risk_ok']}/{s['cases']} does_not_fit_ok={s['does_not_fit_ok']} fits_verdict_disagree="
          f"{s['fits_verdict_disagree']}")
    print(f"cases={s['cases']} median_abs_err={s['median']:.1f}% p90_abs_err={s['p90']:.1f}% max_abs_err={s['max']:.1f}% "
          f"under_5pct={s['under_5pct']} param_mismatch={s['param_mismatch']} oom_missed={s['oom_missed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
