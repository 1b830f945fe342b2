"""An engine's start-up log against the planner's answer: the request the log stands for, the
comparison term by term, the term that explains the gap, and the log as records in the format of
tests/data/golden_serving.json (so that a user's log can become a reference).

Pure functions: the caller (the CLI) runs the estimate between ``log_request`` and ``compare``.
"""

from __future__ import annotations

import re

from ..errors import InputError
from ..schema import at_path
from ..units import GiB, MiB
from .engine_log import ENGINE_NAMES, EngineLog

# logged figure -> (label, result path, unit) per engine
VLLM_TERMS = (("weights", "weights", "report.weights_bytes", "bytes"),
              ("weights_and_non_torch", "weights + non-torch", "report.weights_and_non_torch_bytes", "bytes"),
              ("activation", "profile peak (activation)", "report.activation_bytes", "bytes"),
              ("non_torch", "non-torch memory", "report.non_torch_bytes", "bytes"),
              ("cuda_graphs", "CUDA graphs", "report.cuda_graph_bytes", "bytes"),
              ("available_kv", "KV memory", "report.available_kv_bytes", "bytes"),
              ("kv_tokens", "KV tokens", "kv_cache_tokens", "tokens"),
              ("concurrency", "concurrency", "max_concurrency", "requests"),
              ("gpu_blocks", "GPU blocks", "report.num_gpu_blocks", "blocks"),
              ("needed_kv", "KV one request needs", "report.needed_kv_bytes", "bytes"),
              ("estimated_max_model_len", "estimated max_model_len", "report.estimated_max_model_len", "tokens"))
SGLANG_TERMS = (("free_before_load", "free memory before loading", "report.free_before_load_bytes", "bytes"),
                ("weights", "weights", "report.weights_bytes", "bytes"),
                ("kv_pool", "KV pool", "report.kv_pool_bytes", "bytes"),
                ("kv_tokens", "KV tokens", "kv_cache_tokens", "tokens"),
                ("max_running_requests", "max running requests", "report.max_running_requests", "requests"))
# budget terms whose error moves the KV memory, per engine
BUDGET_TERMS = {"vllm": ("weights", "weights_and_non_torch", "activation", "non_torch", "cuda_graphs"),
                "sglang": ("free_before_load", "weights")}
# budget terms that add to the KV memory when they grow (the others take from it)
GIVING_TERMS = ("free_before_load",)
FILE_TYPES = {"q4_k - medium": "Q4_K_M", "q4_k - small": "Q4_K_S", "q5_k - medium": "Q5_K_M", "q5_k - small": "Q5_K_S",
              "q3_k - medium": "Q3_K_M", "q3_k - small": "Q3_K_S", "q3_k - large": "Q3_K_L", "q2_k - medium": "Q2_K",
              "mxfp4 moe": "MXFP4_MOE", "q6_k": "Q6_K", "q8_0": "Q8_0", "q4_0": "Q4_0", "q4_1": "Q4_1", "q5_0": "Q5_0",
              "q5_1": "Q5_1", "f16": "F16", "bf16": "BF16", "all f32": "F32", "iq4_xs - 4.25 bpw": "IQ4_XS"}
TOLERANCE = {"vllm": 0.02, "sglang": 0.02, "llamacpp": 0.05}     # issue 20's targets


def _model(log: EngineLog, model: str | None, hf_config: str | None) -> dict:
    if hf_config:
        return {"hf_config": hf_config}
    if model:
        return {"model": model}
    from ..data.catalog import model_entries
    from ..serving.commands import model_id_from
    if not log.model:
        raise InputError("model", "the log does not name its model; give --model ID or --hf-config FILE")
    mid, _ = model_id_from(log.model, log.engine)
    if mid not in model_entries():
        raise InputError("model", f"the log names {log.model[:80]!r}, which is not in the catalog; give --model ID or "
                                  "--hf-config FILE")
    return {"model": mid}


def _gpu_devices(log: EngineLog) -> list[str]:
    """llama.cpp's GPU buffers in the order they appear (CUDA0, Vulkan0, Metal, RPC[...])."""
    names = []
    for kind in ("model", "kv", "compute"):
        for dev in log.devices.get(kind, {}):
            if not re.match(r"CPU|.*_Host$|.*_Mapped$", dev) and dev not in names:
                names.append(dev)
    return names


def log_request(log: EngineLog, model: str | None = None, hf_config: str | None = None, gpu=None,
                version: str | None = None) -> dict:
    """The serving request the log stands for: the model, the GPU, and the settings the log states."""
    req = {"schema": 1, **_model(log, model, hf_config)}
    work = {"mode": "serve", "engine": log.engine}
    if version or log.version:
        work["version"] = version or log.version
    settings = dict(log.settings)
    if log.engine == "llamacpp":
        quant = FILE_TYPES.get(str(settings.pop("file_type", "")).lower())
        if quant:
            work["quant"] = quant
        devices = len(_gpu_devices(log))
        if devices > 1:
            work["devices"] = devices
        if settings.get("n_gpu_layers") is not None and devices == 0:
            settings["n_gpu_layers"] = 0
    work.update(settings)
    if log.engine != "llamacpp" and log.model and "quantization" not in work:
        from ..serving.commands import format_from_name
        named = format_from_name(log.model)
        if named:
            work["quantization"] = named
    req["workload"] = work
    if log.engine == "vllm" and log.figures.get("total"):
        name = ""
        if isinstance(gpu, str):
            from ..data.catalog import catalog_gpu
            name = catalog_gpu(gpu)["name"]
        req["gpu"] = {"memory_bytes": log.figures["total"], "name": name or "GPU (total as vLLM printed it)"}
    else:
        from ..request.parse import DEFAULT_GPU
        req["gpu"] = gpu if gpu is not None else DEFAULT_GPU
    return req




def _row(term: str, label: str, path: str, unit: str, logged, estimated) -> dict:
    err = None if estimated is None or not logged else (estimated - logged) / logged * 100
    return {"term": term, "label": label, "measure": path, "unit": unit, "logged": logged, "estimated": estimated,
            "error_pct": None if err is None else round(err, 2)}


def compare(log: EngineLog, result: dict) -> list[dict]:
    """One row per figure the log printed: logged, estimated and the error."""
    rows = []
    if log.engine in ("vllm", "sglang"):
        for term, label, path, unit in (VLLM_TERMS if log.engine == "vllm" else SGLANG_TERMS):
            if term in log.figures:
                rows.append(_row(term, label, path, unit, log.figures[term], at_path(result, path)))
        return rows
    gpus = _gpu_devices(log)
    for kind, key in (("model", "model_buffer_mib"), ("kv", "kv_buffer_mib"), ("compute", "compute_buffer_mib")):
        for dev, logged in log.devices.get(kind, {}).items():
            ours = _our_device(dev, gpus, kind)
            est = at_path(result, f"report.{key}.{ours}")
            rows.append(_row(f"{kind}:{dev}", f"{kind} buffer on {dev}", f"report.{key}.{ours}", "MiB",
                             round(logged / MiB, 2), est))
    if "kv_total" in log.figures:
        rows.append(_row("kv_total", "KV cache size", "report.kv_bytes", "bytes", log.figures["kv_total"],
                         at_path(result, "report.kv_bytes")))
    return rows


def _our_device(dev: str, gpus: list[str], kind: str) -> str:
    if dev in gpus:
        return f"CUDA{gpus.index(dev)}"
    if kind == "model":
        return "CPU_Mapped"
    if kind == "kv":
        return "CPU"
    return "CUDA_Host"


def _graphs_in_budget(log: EngineLog) -> bool:
    """vLLM takes the CUDA-graph estimate out of the KV budget only from the version rule's start."""
    from ..serving.config import DEFAULT_VERSIONS
    from ..versions import holds, version_tuple
    try:
        return holds("vllm-cuda-graphs-in-budget", version_tuple(log.version or DEFAULT_VERSIONS["vllm"]))
    except InputError:
        return False


def explain(log: EngineLog, rows: list[dict]) -> str:
    """The term that explains the gap: the budget term (or llama.cpp buffer) furthest from its log."""
    by = {r["term"]: r for r in rows if r["estimated"] is not None}
    if log.engine == "llamacpp":
        worst = max(by.values(), key=lambda r: abs(r["estimated"] - r["logged"]), default=None)
        if worst is None:
            return "nothing to compare"
        return (f"{worst['label']} is furthest from the log: estimated {worst['estimated']:.2f} MiB, logged "
                f"{worst['logged']:.2f} MiB ({worst['error_pct']:+.1f}%)")
    headline = by.get("kv_tokens") or by.get("available_kv") or by.get("kv_pool")
    terms = [by[t] for t in BUDGET_TERMS[log.engine] if t in by and (t != "cuda_graphs" or _graphs_in_budget(log))]
    if not terms:
        if headline is None:
            return "the log prints no figure the planner estimates"
        return (f"{headline['label']} {headline['error_pct']:+.1f}%; the log does not break the budget down "
                "(no 'Actual usage is ...' / 'mem usage' line), so no single term can be named")
    def effect(r):                 # what the term's error does to the KV memory, in bytes
        diff = r["estimated"] - r["logged"]
        return diff if r["term"] in GIVING_TERMS else -diff
    where = f" ({headline['label']} {headline['error_pct']:+.1f}%)" if headline else ""
    if headline is not None and headline["estimated"] != headline["logged"]:
        sign = 1 if headline["estimated"] > headline["logged"] else -1
        same = [r for r in terms if effect(r) * sign > 0]
        if not same:
            return (f"no term the log breaks out explains the gap{where}: each would move the KV memory the other "
                    "way, so the GPU's total, the CUDA context or another term the log does not print is off")
        terms = same
    worst = max(terms, key=lambda r: abs(effect(r)))
    gap = (worst["estimated"] - worst["logged"]) / GiB
    return (f"{worst['label']} explains most of the gap{where}: estimated {worst['estimated'] / GiB:.2f} GiB, logged "
            f"{worst['logged'] / GiB:.2f} GiB ({gap:+.2f} GiB, which moves the KV memory by {effect(worst) / GiB:+.2f} GiB)")


def records(log: EngineLog, request: dict, rows: list[dict], case: str = "") -> list[dict]:
    """The log as checks in the golden serving format (tests/data/golden_serving.json)."""
    model = request.get("model", "custom")
    case = case or f"user-{log.engine}-{model if isinstance(model, str) else 'custom'}-{log.version or 'unknown'}"
    out = []
    for r in rows:
        if not r["logged"]:
            continue
        rel = TOLERANCE[log.engine]
        out.append({"id": f"{case}:{r['term']}", "case": case, "kind": "end-to-end", "request": request,
                    "measure": r["measure"], "expected": r["logged"], "unit": r["unit"], "tolerance": {"rel": rel},
                    "note": f"{r['label']} as {ENGINE_NAMES[log.engine]} printed it",
                    "source": "a user's start-up log (python -m pycore check --engine-log)",
                    "verbatim_log": list(log.lines[:40])})
    return out


ENGINE_LOG_KEYS = ("text", "model", "hf_config", "gpu", "version", "command")


def check_engine_log(raw, estimate_fn) -> dict:
    """The request's engine-log object, {"text": log, "model"?, "hf_config"?, "gpu"?, "version"?,
    "command"?}, against the estimate of the request it stands for (``estimate_fn`` is the API's
    estimate_dict): the rows, the term that explains the gap, and the records. Raises InputError naming
    the field (``engine_log.<key>``); the page and the CLI share it."""
    from .engine_log import parse_engine_log
    from ..serving.commands import read_command
    if not isinstance(raw, dict):
        raise InputError("engine_log", "must be an object with text (the log) and optionally model, hf_config, "
                                       "gpu, version and command")
    for key in raw:
        if key not in ENGINE_LOG_KEYS:
            raise InputError(f"engine_log.{str(key)[:40]}", "is not a known field; known: " + ", ".join(ENGINE_LOG_KEYS))
    for key in ("model", "hf_config", "version", "command"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise InputError(f"engine_log.{key}", "must be text")
    try:
        log = parse_engine_log(raw.get("text"))
    except InputError as exc:
        raise InputError("engine_log.text", exc.message) from None
    model, hf_config, cmd = raw.get("model") or None, raw.get("hf_config") or None, None
    if raw.get("command"):
        try:
            cmd = read_command(raw["command"], model_given=bool(model or hf_config))
        except InputError as exc:
            raise InputError("engine_log.command", exc.message) from None
        if cmd["workload"]["engine"] != log.engine:
            raise InputError("engine_log.command", f"starts {cmd['workload']['engine']}, but the log is {log.engine}'s")
    req = log_request(log, model or (cmd["model"] if cmd and not hf_config else None), hf_config, raw.get("gpu"),
                      raw.get("version") or None)
    if cmd:
        req["workload"] = {**cmd["workload"], **req["workload"]}
    resp = estimate_fn(req)
    if resp["status"] != "ok":
        err = resp["errors"][0]
        raise InputError(err["field"], err["message"])
    res = resp["result"]
    rows = compare(log, res)
    return {"engine": log.engine, "version": res.get("version"), "request": req, "rows": rows,
            "explanation": explain(log, rows), "records": records(log, req, rows)}
