"""Pre-flight for an accelerate training loop: after ``accelerator.prepare(...)``, before the first step.

    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    preflight(accelerator, model, optimizer, next(iter(loader)))

accelerate is imported inside the function; the core never imports this module."""

from __future__ import annotations

from .common import (PreflightError, build_request, deepspeed_parallelism, fsdp_parallelism, model_part,
                     optimizer_name, precision_part, run)

__all__ = ["PreflightError", "preflight"]


def preflight(accelerator, model, optimizer, batch, gpu="auto", on_risk: str = "raise") -> dict:
    """Estimate the run that ``accelerator`` (its processes, mixed precision, accumulation and DeepSpeed or
    FSDP plugin), ``model``, ``optimizer`` and one ``batch`` make; as pycore.integrations.transformers."""
    notes: list = []
    info = model_part(accelerator.unwrap_model(model), notes)
    batch_size, seq_len = batch_shape(batch)
    workload = {"batch_size": batch_size, "seq_len": seq_len}
    name = optimizer_name(optimizer, notes) if optimizer is not None else None
    if name:
        workload["optimizer"] = name
    mixed = str(accelerator.mixed_precision).lower()
    mixed = mixed if mixed in ("bf16", "fp16") else None
    parallelism = _layout(accelerator, notes)
    if parallelism.get("recipe") == "deepspeed" and mixed:
        precision = {"weights": mixed}
    else:
        precision = precision_part(info["dtype"], mixed, info["workload"]["mode"], notes)
    request = build_request(info, workload, precision, parallelism, gpu)
    return run(request, on_risk, notes, info["parameters"])


def _layout(accelerator, notes: list) -> dict:
    world = int(accelerator.num_processes)
    kind = str(getattr(accelerator.distributed_type, "value", accelerator.distributed_type)).upper()
    state = accelerator.state
    if kind == "DEEPSPEED":
        par = deepspeed_parallelism(dict(state.deepspeed_plugin.deepspeed_config), world)
    elif kind == "FSDP":
        plugin = state.fsdp_plugin
        strategy = getattr(getattr(plugin, "sharding_strategy", None), "name", None)
        offload = getattr(getattr(plugin, "cpu_offload", None), "offload_params", False)
        reshard = getattr(plugin, "reshard_after_forward", None)
        par = fsdp_parallelism(strategy or ("FULL_SHARD" if reshard is not False else "SHARD_GRAD_OP"),
                               offload or None, getattr(plugin, "fsdp_version", 1),
                               reshard if isinstance(reshard, bool) else None, world, notes)
    else:
        par = {"data_parallel": world} if world > 1 else {}
    steps = int(getattr(accelerator, "gradient_accumulation_steps", 1) or 1)
    if steps > 1:
        par["gradient_accumulation"] = steps
    return par


def batch_shape(batch) -> tuple[int, int]:
    """(sequences, tokens each) of a batch: a dict with input_ids (or inputs_embeds), or a tensor."""
    ids = batch
    if isinstance(batch, dict) or hasattr(batch, "keys"):
        ids = batch.get("input_ids", batch.get("inputs_embeds"))
    elif isinstance(batch, (list, tuple)) and batch:
        ids = batch[0]
    shape = getattr(ids, "shape", None)
    if shape is None or len(shape) < 2:
        raise ValueError("pre-flight: the batch has no [batch, sequence] input_ids tensor to read its shape from")
    return int(shape[0]), int(shape[1])
