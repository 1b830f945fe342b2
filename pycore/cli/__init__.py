"""Command line: ``python -m pycore estimate|plan|fit|serve|check|models|gpus``. Each verb builds the JSON request the
page would send and calls the same API (pycore.api.estimate_dict)."""

from __future__ import annotations

import argparse
import json
import sys

from ..api import estimate_dict
from ..data.catalog import gpu_entries, model_entries
from ..model.hfconfig import read_hf_config
from ..model.params import total_params
from ..check.parse import MAX_TEXT_CHARS
from ..units import GiB
from .args import (add_gpu_args, add_layout_args, add_model_args, add_serve_args, add_workload_args, build_request,
                   model_part, printable, read_text_file, serve_part)
from .fromfile import add_from_args
from .render import render, render_check, render_fit, render_plan, render_serve


# Where the page is published (GitHub Pages); --url BASE gives another, such as a local server.
PAGE_URL = "https://gpu-memory-planner.github.io/"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pycore", description="Will this fit? GPU memory for transformer runs.")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_estimate_parser, _plan_parser, _serve_parser, _fit_parser, _check_parser):
        add(sub)
    sub.add_parser("models", help="list the model catalog")
    sub.add_parser("gpus", help="list the GPU catalog")
    return p


def _training_parser(sub, name: str, text: str):
    """A verb that takes a training or inference run: the model, workload, layout and GPU flags."""
    v = sub.add_parser(name, help=text)
    add_model_args(v)
    add_workload_args(v)
    add_layout_args(v)
    add_gpu_args(v)
    return v


def _estimate_parser(sub) -> None:
    e = _training_parser(sub, "estimate", "estimate the peak memory of one configuration")
    e.add_argument("--solve", action="store_true", help="also find the largest batch/sequence and what makes it fit")
    e.add_argument("--json", action="store_true", help="print the result object as JSON")
    e.add_argument("--url", nargs="?", const=PAGE_URL, default=None, metavar="BASE",
                   help=f"print the planner page's link for this configuration instead (base {PAGE_URL})")
    add_from_args(e)


def _plan_parser(sub) -> None:
    pl = _training_parser(sub, "plan", "the fewest GPUs that fit a training run, and its layouts ranked")
    pl.add_argument("--global-batch", type=int, default=None, help="sequences per optimizer step over all GPUs")
    pl.add_argument("--gpus", type=int, default=None, help="rank the layouts of exactly this many GPUs")
    pl.add_argument("--max-gpus", type=int, default=None, help="largest GPU count the search tries (default 1024)")
    pl.add_argument("--limit", type=int, default=20, help="layouts to show")
    pl.add_argument("--json", action="store_true", help="print the result object as JSON")


def _serve_parser(sub) -> None:
    sv = sub.add_parser("serve", help="what a serving engine (vLLM, SGLang, llama.cpp) leaves for the KV cache")
    add_model_args(sv)
    add_serve_args(sv)
    add_gpu_args(sv)
    sv.add_argument("--solve", action="store_true", help="also search: longest context, most requests, smallest "
                                                         "GPU, best GGUF preset")
    sv.add_argument("--json", action="store_true", help="print the result object as JSON")
    sv.add_argument("--from-command", metavar="CMD", default=None,
                    help="read the engine's own command line (vllm serve ..., python -m sglang.launch_server ..., "
                         "llama-server ...); flags given here as well override it")
    sv.add_argument("--print-command", action="store_true",
                    help="also print the command that starts the engine with the settings assumed")
    sv.add_argument("--url", nargs="?", const=PAGE_URL, default=None, metavar="BASE",
                    help="print the planner page's link for this configuration instead")


def _fit_parser(sub) -> None:
    ft = _training_parser(sub, "fit", "the cheapest combinations of changes that make the run fit")
    ft.add_argument("--limit", type=int, default=5, help="plans to show")
    add_from_args(ft)
    ft.add_argument("--json", action="store_true", help="print the result object as JSON")


def _check_parser(sub) -> None:
    ck = _training_parser(sub, "check", "compare the estimate with what your own run printed (memory_summary, "
                                        "max_memory_allocated/reserved, nvidia-smi)")
    ck.add_argument("--measured", metavar="FILE", default=None,
                    help="text your run printed (- reads standard input)")
    ck.add_argument("--engine-log", metavar="FILE", default=None,
                    help="a vLLM, SGLang or llama.cpp start-up log instead: compared term by term with the serving "
                         "estimate (the model and settings are read from the log where it names them)")
    ck.add_argument("--engine-version", default=None, help="the engine's version, where the log does not print it")
    ck.add_argument("--from-command", metavar="CMD", default=None,
                    help="with --engine-log: the command that started the engine, for the settings the log omits")
    ck.add_argument("--record", metavar="FILE", default=None,
                    help="also write the case as a calibration record (one JSON line) to FILE")
    ck.add_argument("--json", action="store_true", help="print the result object as JSON")


def _from_command(a) -> tuple[dict, str | None]:
    """The serve request from the engine's command line, with this CLI's own flags laid over it."""
    from ..errors import InputError
    from ..serving.commands import read_command
    try:
        cmd = read_command(a.from_command, model_given=bool(a.hf_config))
    except InputError as exc:
        return {}, printable(f"--from-command: {exc.message}")
    for note in cmd["notes"]:
        print(printable(f"note: {note}"), file=sys.stderr)
    req, problem = model_part(a) if (a.hf_config or a.params is not None) else ({"model": cmd["model"]}, None)
    workload = {**cmd["workload"], **{k: v for k, v in serve_part(a).items() if k != "mode"}}
    req.update({"schema": 1, "workload": workload, "solve": a.solve,
                "gpu": {"memory_gib": a.gpu_memory_gib} if a.gpu_memory_gib is not None else a.gpu})
    return req, problem


def _engine_log(a) -> int:
    """check --engine-log: the log against the serving estimate, term by term, and its records (the
    core's check_engine_log, as the page's engine-log box calls it)."""
    from ..check.engine_compare import check_engine_log
    from ..errors import InputError
    text, problem = read_text_file(a.engine_log, "--engine-log") if a.engine_log != "-" else \
        (sys.stdin.read(4 * MAX_TEXT_CHARS + 4), None)
    hf_config = None
    if not problem and a.hf_config:
        hf_config, problem = read_text_file(a.hf_config, "--hf-config")
    if problem:
        print(printable(f"error: {problem}"), file=sys.stderr)
        return 2
    gpu = {"memory_gib": a.gpu_memory_gib} if a.gpu_memory_gib is not None else a.gpu
    raw = {"text": text, "model": a.model, "hf_config": hf_config, "gpu": gpu, "version": a.engine_version,
           "command": a.from_command}
    try:
        out = check_engine_log({k: v for k, v in raw.items() if v is not None}, estimate_dict)
    except InputError as exc:
        field = {"engine_log.command": "from_command", "engine_log.text": "engine_log"}.get(exc.field, exc.field)
        print(printable(f"error: {field}: {exc.message}"), file=sys.stderr)
        return 2
    rows = out["rows"]
    if a.record:
        with open(a.record, "a", encoding="utf-8") as fh:
            for rec in out["records"]:
                fh.write(json.dumps(rec, sort_keys=True) + "\n")
    if a.json:
        print(json.dumps(out, indent=1))
        return 0
    print(printable(f"{out['engine']} {out['version']} log: {len(rows)} figures compared"))
    for r in rows:
        est = "-" if r["estimated"] is None else f"{r['estimated']:,.2f}" if isinstance(r["estimated"], float) \
            else f"{r['estimated']:,}"
        err = "" if r["error_pct"] is None else f"{r['error_pct']:+.2f}%"
        print(printable(f"  {r['label']:32s} logged {r['logged']:>18,} {r['unit']:8s} estimated {est:>18s} {err}"))
    print(printable(f"gap: {out['explanation']}"))
    return 0


def _run(req: dict) -> tuple[dict | None, int]:
    resp = estimate_dict(req)
    if resp["status"] != "ok":
        for err in resp["errors"]:
            print(printable(f"error: {err['field']}: {err['message']}"), file=sys.stderr)
        return None, 2
    return resp["result"], 0


def _from_file(a, argv) -> tuple[dict | None, str | None]:
    """``--from FILE``: the config fills the flags not given (pycore/cli/fromfile.py)."""
    if not getattr(a, "from_file", None):
        return None, None
    from .fromfile import apply_from, explicit_dests
    return apply_from(a, explicit_dests(_parser(), sys.argv[1:] if argv is None else argv))


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    if a.command in ("models", "gpus"):
        return _list_catalog(a.command)
    if a.command == "check" and a.engine_log is not None:
        return _engine_log(a)
    if a.command == "check" and a.measured is None:
        print("error: give --measured FILE (your run's output) or --engine-log FILE", file=sys.stderr)
        return 2
    req, reading, problem = _request(a, argv)
    if not problem and getattr(a, "url", None):
        return _print_url(req, a.url)
    if not problem:
        problem = _add_query(a, req)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    res, code = _run(req)
    if res is None:
        return code
    if a.command == "check" and a.record and not _write_record(a.record, res):
        return 2
    return _show(a, res, reading)


def _list_catalog(command: str) -> int:
    """models / gpus: the catalog, one line each."""
    if command == "models":
        entries = sorted(model_entries().items())
        wid = max(len(mid) for mid, _ in entries)
        wfam = max(len(e["family"]) for _, e in entries)
        for mid, entry in entries:
            m = read_hf_config(entry["hf_config"], mid)
            print(f"{mid:{wid}s}  {entry['family']:{wfam}s} {total_params(m) / 1e9:9.3f} B  {m.model_type}")
        return 0
    for gid, g in sorted(gpu_entries().items(), key=lambda kv: kv[1]["memory_bytes"]):
        print(f"{gid:20s} {g['memory_bytes'] / GiB:7.1f} GiB  {g['name']}")
    return 0


def _request(a, argv) -> tuple[dict | None, dict | None, str | None]:
    """The request the verb makes, what ``--from`` read (or None), and the problem to report (or None)."""
    if a.command == "serve" and a.from_command is not None:
        req, problem = _from_command(a)
        return req, None, problem
    if a.command == "serve":
        req, problem = model_part(a)
        if not problem:
            req.update({"schema": 1, "workload": serve_part(a), "solve": a.solve,
                        "gpu": {"memory_gib": a.gpu_memory_gib} if a.gpu_memory_gib is not None else a.gpu})
        return req, None, problem
    reading, problem = _from_file(a, argv)
    if problem:
        return None, reading, problem
    req, problem = build_request(a)
    return req, reading, problem


def _print_url(req: dict, base: str) -> int:
    """--url: the planner page's link for the request."""
    from ..errors import InputError
    from ..request.links import to_url
    try:
        print(to_url(req, base))
    except InputError as exc:
        print(printable(f"error: {exc.field}: {exc.message}"), file=sys.stderr)
        return 2
    return 0


def _add_query(a, req: dict) -> str | None:
    """The verb's own part of the request (fit's limit, check's measured text, plan's query); the problem
    reading the measured text, if any."""
    if a.command == "fit":
        req["fit"] = {"limit": a.limit}
    if a.command == "check":
        if a.measured == "-":
            text = sys.stdin.read(4 * MAX_TEXT_CHARS + 4)
        else:
            text, problem = read_text_file(a.measured, "--measured")
            if problem:
                return problem
        req["measured"] = {"text": text}                  # bounded and parsed by the core
    if a.command == "plan":
        req["plan"] = {k: v for k, v in (("gpus", a.gpus), ("global_batch", a.global_batch), ("max_gpus", a.max_gpus),
                                         ("limit", a.limit)) if v is not None}
    return None


def _write_record(path: str, res: dict) -> bool:
    """check --record: the case as one calibration record appended to the file; False (said) when there is none."""
    record = res["check"]["record"]
    if record is None:
        print(printable(f"error: --record: {res['check']['record_note']}"), file=sys.stderr)
        return False
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
    return True


def _show(a, res: dict, reading) -> int:
    """The answer: what --from read, then the launch command, the JSON or the verb's table."""
    if getattr(a, "from_file", None):
        from .fromfile import print_reading
        if a.json:
            res["from"] = {"file": a.from_file, **{k: v for k, v in reading.items() if k != "request"}}
        else:
            print_reading(reading, a.from_file, sys.stderr if a.print_command else sys.stdout)
    if getattr(a, "print_command", False) and a.command != "serve":     # serve prints its engine's launch command
        from .fromfile import print_command
        return print_command(res)
    if a.json:
        print(json.dumps(res, indent=1))
    elif a.command == "plan":
        render_plan(res)
    elif a.command == "serve":
        render_serve(res)
        if res.get("version_note"):
            print(printable(f"version: {res['version_note']}"))
        if a.print_command:
            print(f"launch: {printable(res.get('launch_command', ''))}")
    elif a.command == "check":
        render_check(res)
    elif a.command == "fit":
        render_fit(res)
    else:
        render(res)
    return 0
