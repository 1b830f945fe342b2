"""The one entry point shared by the CLI, the web page and the tests: JSON in, JSON out."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

from .errors import InputError
from .request.jsontext import MAX_REQUEST_CHARS, parse_json
from .data.catalog import gpu_entries, model_entries
from .estimate import Estimate, estimate as _estimate
from .request.parse import SCHEMA, parse_parallelism, parse_request, request_schema
from .model.spec import ModelSize
from .model.params import total_params
from .accuracy.bands import reference_band, run_class, single_gpu_band, verdict
from .accuracy.verdicts import device_band_summary, quantity_bands, serving_bands, serving_error_band


def _phase_list(e: Estimate) -> list:
    return [{"phase": s.phase, "moment": s.moment, "bytes": s.total()} for s in e.snapshots]


def _model_dict(req, m) -> dict:
    return {"id": req.model_id, "name": m.name, "family": m.family, "model_type": m.model_type,
            "n_layers": m.n_layers, "hidden_size": m.hidden_size, "vocab_size": getattr(m, "vocab_size", 0),
            "max_positions": getattr(m, "max_positions", 0)}


def result_dict(req, e: Estimate) -> dict:
    m = e.model
    breakdown = e.breakdown().to_dict()
    out = {
        "model": _model_dict(req, m),
        "params": e.params,
        "gpu": {"id": req.gpu_id, "name": req.hardware.name, "memory_bytes": req.hardware.memory_bytes},
        "peak_allocated_bytes": e.peak_allocated_bytes,
        "reserved_bytes": e.reserved_bytes,
        "device_total_bytes": e.device_total_bytes,
        "model_states_bytes": e.model_states_bytes,
        "peak_phase": e.peak.phase,
        "peak_moment": e.peak.moment,
        "fits": e.fits,
        "headroom_bytes": req.hardware.memory_bytes - e.device_total_bytes,
        "breakdown": breakdown,
        "per_gpu": breakdown,               # the reported (most loaded) rank's breakdown; "breakdown" is the same
        "phases": _phase_list(e),
        "kernel": e.context.kernel if e.context else None,
        "warnings": list(e.warnings),
        "assumptions": {"torch": req.framework.torch, "transformers": req.framework.transformers,
                        "peft": req.framework.peft, "sdpa_kernel": e.context.kernel if e.context else None,
                        "cuda_context_bytes": req.framework.context_bytes(),
                        "zero_grad_set_to_none": not req.framework.keeps_gradients()},
    }
    out["bands"] = quantity_bands(e)
    out["error_band"] = device_band_summary(estimate_band(req, e), out["bands"], e.device_total_bytes)
    out["verdict"] = e.verdict                  # from out["bands"]; e.fits is verdict == "fits"
    out["term_basis"] = term_basis(e, out["error_band"])
    if e.layout:
        out["layout"] = e.layout
    if e.report:
        out["report"] = e.report
    if e.host_bytes:
        out["host_bytes"] = e.host_bytes
    if e.not_estimated:
        out["not_estimated"] = list(e.not_estimated)
    if req.workload.mode != "inference":       # the arguments that run it (pycore/commands)
        from .commands import run_arguments
        if (run := run_arguments(req)) is not None:
            out["run_arguments"] = run
    if req.solve:
        from .plan.solve import largest, largest_parameters, search_largest, suggestions
        from .training.explain import explanations
    if req.solve and isinstance(m, ModelSize):
        out["max_parameters"] = largest_parameters(req)
    if req.solve and e.context is not None:
        out["explanations"] = explanations(e)
        out["max_batch_size"] = largest(req, "batch_size")
        seq = search_largest(req, "seq_len")
        out["max_seq_len"] = seq["value"]
        out["max_seq_len_gaps"] = seq["gaps"]          # shorter lengths that do not fit, below the answer
        out["suggestions"] = suggestions(req, e.device_total_bytes)
    return out


def estimate_band(req, e: Estimate) -> dict:
    """The error band of an estimate: measured runs of its class on one GPU, the published multi-GPU
    references for a layout."""
    if e.layout and (e.layout.get("gpus", 1) > 1 or e.layout.get("recipe", "hf") != "hf"):
        return reference_band("total", "multi-GPU peaks and the recipes' own formulas")
    kernel = e.context.kernel if e.context else None
    return single_gpu_band(run_class(req.workload.mode, e.model.family, kernel), req.precision.quant_format is not None)


def term_basis(e: Estimate, band: dict) -> dict:
    """Whether each term of the breakdown is measured, from the libraries' source, or assumed."""
    measured = band.get("status") == "measured"
    out = {}
    for node in e.breakdown().children[0].children:
        name = node.name
        if name in ("weights", "optimizer states", "gradients", "KV cache", "framework buffers",
                    "autocast weight copies"):
            out[name] = "source"
        else:
            out[name] = "measured" if measured else "source"
    out["allocator reserve"] = "measured"
    out["CUDA context"] = "measured"
    return out


# The allocator replay (framework.alloc_conf, training/caching.py) costs milliseconds an estimate: the
# searches that evaluate hundreds of candidates (fit, plan, sweep) rank them with torch's default reserve, the
# measured share of churn, so that they stay within their second of CPU; the answer's own configuration
# is replayed.
REPLAY_NOTE = ("candidates are ranked with torch's default allocator reserve; framework.alloc_conf is replayed "
               "for the configuration answered above")


def searched(req):
    """The request as the fit and layout searches evaluate it (without the allocator replay)."""
    if not req.framework.alloc_conf:
        return req
    return replace(req, framework=replace(req.framework, alloc_conf=None))


def plan_result(req) -> dict:
    """The layout search: the recommended layout's full result, with the ranked layouts under "plan"."""
    if req.workload.mode == "inference" or isinstance(req.model, ModelSize):
        raise InputError("plan", "the layout search is for training a model given by its dimensions")
    from .plan.layouts import run_plan
    plan = run_plan(searched(req), req.plan)
    if req.framework.alloc_conf:
        plan["note"] = REPLAY_NOTE
    chosen = plan["recommended"]
    par = req.parallelism if chosen is None else parse_parallelism({**chosen["parallelism"],
                                                                     "gpus_per_node": req.parallelism.gpus_per_node})
    par = replace(par, options=req.parallelism.options)
    batch = chosen["micro_batch"] if chosen else req.workload.batch_size
    sized = replace(req, parallelism=par, workload=replace(req.workload, batch_size=batch), plan=None, solve=False)
    out = result_dict(sized, _estimate(sized.model, sized.workload, sized.precision, sized.hardware, sized.framework, par))
    out["plan"] = plan
    return out


def fit_result(req, e: Estimate) -> dict:
    """The cheapest combinations of changes that fit (one GPU's training or inference)."""
    if isinstance(req.model, ModelSize):
        raise InputError("fit", "the fit search needs the model's dimensions or config.json")
    from .plan.fit import fit_search
    if e.fits:
        return {"plans": [], "evaluated": 0, "levers": [], "complete": True, "message": "it fits as it is"}
    out = fit_search(searched(req), req.fit, e.device_total_bytes)
    if req.framework.alloc_conf:
        out["note"] = REPLAY_NOTE
    for plan in out["plans"]:
        # the verdict with the error band of the plan's own run (its mode, kernel, layout): a plan can fit
        # but be at risk
        pe = plan.pop("_estimate")
        band = estimate_band(replace(req, workload=pe.workload, precision=pe.precision), pe)
        plan["verdict"] = pe.verdict                  # kept because it fits: "fits", as plan["fits"]
        plan["fits"] = pe.fits
        plan["error_band"] = device_band_summary(band, quantity_bands(pe), pe.device_total_bytes).get("basis", "")
        from .commands import plan_run_arguments
        if (run := plan_run_arguments(req, plan.get("set", {}), pe.workload, pe.precision)) is not None:
            plan["run_arguments"] = run
    return out


def serving_result(req) -> dict:
    """Workload mode "serve": the engine's budget on the most loaded GPU, its KV tokens and requests."""
    if req.serving.engine == "hf":
        return hf_generate_result(req)
    from .plan.serving import serving_solutions           # the serving family loads on first use
    from .serving.engines import estimate_serving, serving_dict
    e = estimate_serving(req.model, req.serving, req.hardware, req.checkpoint, req.framework.context_bytes())
    device = e.device.to_dict()
    out = {"model": _model_dict(req, req.model), "params": {"total": total_params(req.model)},
           "gpu": {"id": req.gpu_id, "name": req.hardware.name, "memory_bytes": req.hardware.memory_bytes},
           "device_total_bytes": e.device_total_bytes, "fits": e.fits,
           "headroom_bytes": req.hardware.memory_bytes - e.device_total_bytes,
           "breakdown": device, "per_gpu": device, "warnings": list(e.warnings), **serving_dict(e)}
    from .serving.commands import launch_command, version_note        # issue 20: the command both ways
    out["launch_command"] = launch_command(e.engine, req.model_id or "MODEL", e.settings, asdict(req.serving))
    out["version_note"] = version_note(req.serving)
    out["error_band"] = serving_error_band(e)
    out["verdict"] = e.verdict                  # accuracy/verdicts.serving_verdict, as the searches judge
    out["fits"] = out["verdict"] == "fits"                # fits and verdict never disagree (issue 22)
    out["bands"] = serving_bands(out["error_band"], e.device_total_bytes)
    if req.solve:
        out["solutions"] = serving_solutions(req)
    return out


def hf_generate_result(req) -> dict:
    """The hf engine is transformers' generate: the inference workload with the serving names."""
    from .serving.hf import generate_request
    sized = generate_request(req)
    e = _estimate(sized.model, sized.workload, sized.precision, sized.hardware, sized.framework, sized.parallelism)
    out = result_dict(sized, e)
    s = req.serving
    out.update({"engine": "hf", "version": sized.framework.transformers, "kv_cache_tokens": s.num_prompts *
                (s.prompt_len + s.max_new_tokens), "max_concurrency": s.num_prompts,
                "context_len": s.prompt_len + s.max_new_tokens, "starts": True, "refusal": ""})
    if s.devices > 1 or s.max_memory is not None:       # from_pretrained(device_map=..., max_memory=...)
        from .serving.hf_devices import device_map_answer
        multi = device_map_answer(req, e)
        out.update({**multi, "warnings": out["warnings"] + multi["warnings"]})
        out["verdict"] = (verdict(out["device_total_bytes"], req.hardware.memory_bytes, out["error_band"])
                          if out["starts"] else "does not start")
    if req.solve and e.model.family != "bert":           # device_map is modelled for decoders
        from .serving.hf_devices import fewest_gpus
        out["solutions"] = {"fewest_gpus": fewest_gpus(req, e, out["error_band"])}
    return out


def estimate_dict(data) -> dict:
    """Estimate from an already-parsed request; returns the response object."""
    try:
        req = parse_request(data)
        measured = None
        if data.get("measured") is not None:           # the user's own run, to check the estimate against
            from .check.parse import parse_measured
            measured = parse_measured(data["measured"])
        for key in ("fit", "sweep"):           # serving requests refuse both when they are parsed
            if getattr(req, key) is not None and req.plan is not None:
                raise InputError(key, "is for one configuration; the layout search has its own table")
        if req.serving is not None:
            result = serving_result(req)
        elif req.plan is not None:
            result = plan_result(req)
        else:
            e = _estimate(req.model, req.workload, req.precision, req.hardware, req.framework, req.parallelism)
            result = result_dict(req, e)
            if req.fit is not None:
                result["fit"] = fit_result(req, e)
            if req.sweep is not None:
                if isinstance(req.model, ModelSize):
                    raise InputError("sweep", "a sweep needs the model's dimensions or config.json")
                from .plan.sweep import run_sweep
                result["sweep"] = run_sweep(searched(req), req.sweep)
                if req.framework.alloc_conf:
                    result["sweep"]["note"] = REPLAY_NOTE.replace("candidates are ranked", "the points are estimated")
        if measured is not None:
            from .check.compare import check
            result["check"] = check(data, result, measured, estimate_dict, request_schema()["fields"])
        return {"schema": SCHEMA, "status": "ok", "result": result}
    except InputError as exc:
        return {"schema": SCHEMA, "status": "error", "errors": [exc.as_dict()]}
    except (RecursionError, MemoryError, OverflowError) as exc:
        return {"schema": SCHEMA, "status": "error",
                "errors": [{"field": "request", "message": f"request too large or deep: {type(exc).__name__}"}]}


def estimate(request_json: str) -> str:
    """JSON request in, JSON response out: ``{"status": "ok", "result": ...}`` or
    ``{"status": "error", "errors": [{"field": ..., "message": ...}]}``. Never raises."""
    try:
        return json.dumps(estimate_dict(parse_json(request_json, "request", MAX_REQUEST_CHARS)))
    except InputError as exc:
        return json.dumps({"schema": SCHEMA, "status": "error", "errors": [exc.as_dict()]})
    except RecursionError:
        return json.dumps({"schema": SCHEMA, "status": "error",
                           "errors": [{"field": "request", "message": "JSON nested too deeply"}]})
    except Exception as exc:  # noqa: BLE001 - the contract is that nothing escapes this function
        return json.dumps({"schema": SCHEMA, "status": "error",
                           "errors": [{"field": "request", "message": f"internal error: {type(exc).__name__}: {exc}"[:300]}]})


def json_answer(field: str, compute) -> str:
    """``compute()``'s result as the JSON answer ``{"status": "ok", "result": ...}``, or its InputError (or any
    other exception, named after ``field``) as ``{"status": "error", "errors": [...]}``: the contract of every
    JSON entry point, which never raises. ``compute`` may return a whole response (a failed estimate)."""
    try:
        out = compute()
        if isinstance(out, dict) and out.get("status") == "error":
            return json.dumps(out)
        return json.dumps({"schema": SCHEMA, "status": "ok", "result": out})
    except InputError as exc:
        return json.dumps({"schema": SCHEMA, "status": "error", "errors": [exc.as_dict()]})
    except Exception as exc:  # noqa: BLE001 - the contract is that nothing escapes this function
        return json.dumps({"schema": SCHEMA, "status": "error",
                           "errors": [{"field": field, "message": f"internal error: {type(exc).__name__}"}]})


def links(request_json: str) -> str:
    """A request's page link query and command line, and its result as Markdown (the page's "Copy as
    command" and exports). JSON in, JSON out; never raises."""
    from .request.links import markdown, to_command, to_query

    def compute():
        data = parse_json(request_json, "request", MAX_REQUEST_CHARS)
        resp = estimate_dict(data)
        if resp["status"] != "ok":
            return resp
        return {"command": to_command(data), "query": to_query(data), "markdown": markdown(resp["result"])}
    return json_answer("request", compute)


def from_config(request_json: str) -> str:
    """The page's training-config box (pycore/runconfig/page.py): a config's text in, the page's link out."""
    from .runconfig.page import from_config_json
    return from_config_json(request_json)


def engine_log(request_json: str) -> str:
    """An engine's start-up log against the estimate of the request it stands for: JSON in
    ``{"text": log, "model"?, "hf_config"?, "gpu"?, "version"?, "command"?}``, JSON out (the rows term by
    term, the term that explains the gap, the records in the golden format). Never raises."""
    from .check.engine_compare import check_engine_log
    return json_answer("engine_log", lambda: check_engine_log(parse_json(request_json, "engine_log", MAX_REQUEST_CHARS),
                                                              estimate_dict))


def schema() -> str:
    """Every request field's type, range, choices, default and modes, as JSON (the page reads it)."""
    return json.dumps(request_schema())


def catalog() -> str:
    """The page's start-up data as JSON: the model and GPU pickers (ids, families, parameter counts,
    memory) and the request schema, written into catalog.json at build time so that the form can be
    checked before the Python runtime has loaded."""
    from .data.catalog import catalog_model
    from .model.params import total_params
    models = []
    for mid, entry in sorted(model_entries().items()):
        m = catalog_model(mid)
        models.append({"id": mid, "family": entry["family"], "params": total_params(m), "model_type": m.model_type,
                       "max_positions": m.max_positions})
    gpus = [{"id": gid, "name": g["name"], "vendor": g["vendor"], "kind": g["kind"], "memory_bytes": g["memory_bytes"]}
            for gid, g in sorted(gpu_entries().items(), key=lambda kv: (kv[1]["vendor"], -kv[1]["memory_bytes"]))]
    # The flag users know for each serving field (-ngl, -c, --max-model-len): the first each engine's parser lists.
    from .serving.commands import LLAMA_FLAGS, SGLANG_FLAGS, VLLM_FLAGS
    flags: dict[str, str] = {}
    for table in (VLLM_FLAGS, SGLANG_FLAGS, LLAMA_FLAGS):
        for flag, (name, kind) in table.items():
            if kind != "nobool":
                flags.setdefault(name, flag)
    from .data.catalog import term_entries            # each term's colour and docs anchor, by key (the page's charts)
    terms = {k: {"colour": t["colour"], "anchor": t["anchor"]} for k, t in term_entries().items()}
    return json.dumps({"schema": SCHEMA, "models": models, "gpus": gpus, "request": request_schema(), "engine_flags": flags,
                       "terms": terms})
