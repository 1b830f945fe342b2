"""Calibration records (the format of shared/calibration, fields in its README) to requests and back.

``request_from_record`` is how scripts/calibrate.py estimates a measured case; ``calibration_record``
turns a user's checked run into a record in the same format, so that it can be sent and added.
``record_from_flat`` converts what shared/calibration/measure_hf.py writes (one flat object per
case, its own field names) into a record.
"""

from __future__ import annotations

from .parse import Measurement

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]       # measure_hf.py's LoRA default
SHARED_GPU = "h100-sxm-80gb"          # the shared file's GPU, for a record that does not say its own


def _version(text):
    """torch reports 2.11.0+cu130; the request wants the release."""
    return str(text).split("+")[0] if text else None


def request_from_record(rec: dict) -> dict:
    """The estimate request for a calibration record: built from its hf_config, never its id."""
    w = rec["workload"]
    workload = {k: w[k] for k in ("mode", "batch_size", "seq_len", "optimizer", "gradient_checkpointing", "head",
                                  "num_labels", "cache_implementation")
                if k in w and w[k] is not None}
    workload["attention"] = w.get("attention", "sdpa")
    if w["mode"] == "inference":
        workload["new_tokens"] = w.get("new_tokens", 0)
    if w["mode"] in ("lora", "qlora"):
        workload["lora"] = {"rank": w.get("lora_rank", 16), "alpha": w.get("lora_alpha", 32),
                            "targets": w.get("lora_targets", DEFAULT_TARGETS)}
    env = rec.get("env", {})
    if "gpu_total_bytes" in env:
        gpu = {"memory_bytes": env["gpu_total_bytes"], "name": env.get("gpu", "")}
    else:
        from ..data.catalog import catalog_gpu
        gpu = {"memory_bytes": catalog_gpu(SHARED_GPU)["memory_bytes"], "name": env.get("gpu", "")}
    framework = {k: _version(env[k]) for k in ("torch", "transformers", "peft") if env.get(k)}
    req = {"schema": 1, "hf_config": rec["hf_config"], "workload": workload,
           "precision": {"weights": w["weights_dtype"], "autocast": w.get("autocast_dtype")}, "gpu": gpu}
    if framework:
        req["framework"] = framework
    return req


def _hf_config(data: dict):
    if isinstance(data.get("hf_config"), dict):
        return data["hf_config"]
    model = data.get("model")
    if isinstance(model, dict) and isinstance(model.get("hf_config"), dict):
        return model["hf_config"]
    if isinstance(model, str):
        from ..data.catalog import model_entries
        entry = model_entries().get(model)
        return entry["hf_config"] if entry else None
    return None


# The request's modes in measure_hf.py's names (shared/calibration); mode peft has no counterpart.
_MODE_TAGS = {"full": "train", "lora": "lora", "qlora": "qlora", "inference": "infer"}


def calibration_record(data: dict, result: dict, meas: Measurement) -> tuple[dict | None, str]:
    """(record, note): the checked run as a calibration record, or None and why it cannot be one."""
    from ..request.parse import parse_request
    clean = {k: v for k, v in data.items() if k not in ("measured", "solve", "plan")}
    req = parse_request(clean)
    if req.serving is not None:
        return None, "serving engines are checked against their logs, not calibration records"
    if result.get("layout", {}).get("gpus", 1) > 1:
        return None, "calibration records are single-GPU runs; this layout has more than one GPU"
    if req.workload.mode not in _MODE_TAGS:
        return None, (f"calibration records hold {', '.join(_MODE_TAGS)} runs (measure_hf.py's modes); a "
                      f"{req.workload.mode} run's adapter config is not part of that format")
    if meas.peak_allocated is None:
        return None, "a calibration record needs the peak allocation: max_memory_allocated() or the memory summary"
    hf = _hf_config(data)
    if hf is None:
        return None, "a calibration record needs the model's config.json; this model was given by its dimensions"
    w, p = req.workload, req.precision
    workload = {"mode": w.mode, "weights_dtype": p.weights, "autocast_dtype": p.autocast, "attention": w.attention,
                "batch_size": w.batch_size, "seq_len": w.seq_len}
    if w.mode == "inference":
        workload["new_tokens"] = w.new_tokens
        if w.cache_implementation != "dynamic":
            workload["cache_implementation"] = w.cache_implementation
    else:
        workload.update({"optimizer": w.optimizer, "gradient_checkpointing": w.gradient_checkpointing})
    if w.mode in ("lora", "qlora"):
        targets = w.lora_targets if w.lora_targets is not None else DEFAULT_TARGETS
        workload.update({"lora_rank": w.lora_rank, "lora_alpha": w.lora_alpha,
                         "lora_targets": targets if isinstance(targets, str) else list(targets)})
    if w.head != "auto":
        workload["head"] = w.head
        if w.head in ("sequence-classification", "token-classification"):
            workload["num_labels"] = w.num_labels
    measured = {"status": "oom" if meas.cuda_ooms else "ok", "peak_allocated_bytes": meas.peak_allocated.bytes}
    if meas.peak_reserved:
        measured["peak_reserved_bytes"] = meas.peak_reserved.bytes
    if meas.device_used and meas.peak_reserved:
        used = max(r.bytes for r in meas.device_used)
        if used > meas.peak_reserved.bytes:
            measured["cuda_context_bytes"] = used - meas.peak_reserved.bytes
    total = meas.device_total.bytes if meas.device_total else req.hardware.memory_bytes
    model_id = data["model"] if isinstance(data.get("model"), str) else (result.get("model") or {}).get("id") or "custom"
    mode_tag = _MODE_TAGS[w.mode]
    record = {"id": f"user-{model_id}-{mode_tag}-{p.weights}-b{w.batch_size}-s{w.seq_len}", "model": model_id,
              "hf_config": hf, "workload": workload, "measured": measured,
              "env": {"gpu": req.hardware.name, "gpu_total_bytes": total, "torch": req.framework.torch,
                      "transformers": req.framework.transformers, "peft": req.framework.peft,
                      "source": "pasted into the planner's check; readings: " + "; ".join(
                          r.source for r in (meas.peak_allocated, meas.peak_reserved) if r)}}
    note = "in the format of shared/calibration; the versions and GPU are the request's: correct them if the run differed"
    return record, note


# measure_hf.py's case and result names -> the record's.
_FLAT_MODES = {"train": "full", "lora": "lora", "qlora": "qlora", "infer": "inference"}
_FLAT_STEPS = {"step_start_bytes": "last_step_step_start_bytes", "after_fwd_bytes": "last_step_after_fwd_bytes",
               "fwd_peak_bytes": "last_step_fwd_peak_bytes", "after_bwd_bytes": "last_step_after_bwd_bytes",
               "bwd_peak_bytes": "last_step_bwd_peak_bytes", "after_opt_bytes": "last_step_after_opt_bytes",
               "steady_peak_bytes": "last_step_steady_peak_bytes"}


def record_from_flat(flat: dict, models: dict, gpu: str = "") -> dict:
    """A calibration record from one line of measure_hf.py's output. ``models`` is its MODELS table
    (model name -> config fields with model_type), from which the record's hf_config is built."""
    if flat.get("status") not in ("ok", "oom"):
        raise ValueError(f"{flat.get('id')}: status {flat.get('status')!r} is not a measurement")
    mode = _FLAT_MODES[flat["mode"]]
    workload = {"mode": mode, "weights_dtype": flat.get("weights", "fp32"), "autocast_dtype": flat.get("amp"),
                "attention": flat.get("attn", "sdpa"), "batch_size": flat["batch"], "seq_len": flat["seq"]}
    if mode == "inference":
        workload["new_tokens"] = flat.get("new_tokens", 0)
    else:
        workload.update({"optimizer": flat.get("optim", "adamw"), "gradient_checkpointing": bool(flat.get("ckpt", False)),
                         "steps_measured": flat.get("steps", 3)})
    if mode in ("lora", "qlora"):
        workload.update({"lora_rank": flat.get("lora_r", 16), "lora_alpha": 32,
                         "lora_targets": flat.get("lora_targets", DEFAULT_TARGETS)})
    for key in ("head", "num_labels"):
        if key in flat:
            workload[key] = flat[key]
    measured = {"status": flat["status"], "peak_allocated_bytes": flat["peak_alloc_bytes"],
                "peak_reserved_bytes": flat["peak_reserved_bytes"], "cuda_context_bytes": flat["context_bytes"]}
    for key in ("n_params", "n_trainable", "weights_bytes"):
        if key in flat:
            measured[key] = flat[key]
    for src, dst in _FLAT_STEPS.items():
        if src in flat:
            measured[dst] = flat[src]
    cfg = dict(models[flat["model"]])
    env = {"framework": "huggingface-transformers", "gpu": gpu, "gpu_total_bytes": flat["gpu_total_bytes"],
           "torch": flat.get("torch"), "transformers": flat.get("transformers")}
    return {"id": flat["id"], "model": flat["model"], "hf_config": cfg, "workload": workload, "measured": measured,
            "env": env}
