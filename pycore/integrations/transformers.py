"""Pre-flight for the Hugging Face Trainer: one line in a training script stops a run that will not fit
before step 1, with the breakdown and a plan that fits.

    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      callbacks=[PreflightCallback()])          # or: preflight(args, model, seq_len=4096)

transformers is imported by this module (the Trainer callback's base class); the core never imports it.
"""

from __future__ import annotations

import json
import logging

from transformers import TrainerCallback

from .common import (PreflightError, build_request, deepspeed_parallelism, fsdp_parallelism, model_part,
                     precision_part, run)
from ..runconfig.reading import HF_OPTIMIZERS

__all__ = ["PreflightCallback", "PreflightError", "preflight"]
logger = logging.getLogger("pycore.preflight")


def preflight(args, model, seq_len: int | None = None, gpu="auto", on_risk: str = "raise") -> dict:
    """Estimate the run that ``args`` (TrainingArguments) and ``model`` make on ``gpu`` ("auto": this
    process's CUDA device; a catalog id such as "rtx-4090-24gb"; or bytes). Returns the JSON API's result
    object with the request it built under "request"; raises PreflightError when the verdict is "does not
    fit" (on_risk="warn" logs and warns instead)."""
    notes: list = []
    info = model_part(model, notes)
    seq = seq_len or getattr(args, "max_length", None) or getattr(args, "max_seq_length", None)
    if not seq:
        raise ValueError("pre-flight needs the sequence length: give seq_len=N (PreflightCallback takes it from "
                         "the first batch)")
    workload = {"batch_size": int(args.per_device_train_batch_size), "seq_len": int(seq),
                "optimizer": _optimizer(args, notes)}
    # TrainingArguments.activation_checkpointing (transformers 5.x; gradient_checkpointing is its old name)
    if getattr(args, "activation_checkpointing" if hasattr(args, "activation_checkpointing")
               else "gradient_checkpointing", False):
        workload["gradient_checkpointing"] = True
    mixed = "bf16" if getattr(args, "bf16", False) else "fp16" if getattr(args, "fp16", False) else None
    parallelism = _layout(args, notes)
    if parallelism.get("recipe") == "deepspeed" and mixed:
        precision = {"weights": mixed}          # the DeepSpeed engine casts the model to bf16/fp16
    else:
        precision = precision_part(info["dtype"], mixed, info["workload"]["mode"], notes)
    request = build_request(info, workload, precision, parallelism, gpu)
    return run(request, on_risk, notes, info["parameters"])


def _optimizer(args, notes: list) -> str:
    name = str(getattr(args.optim, "value", args.optim))
    if name in HF_OPTIMIZERS:
        return HF_OPTIMIZERS[name]
    notes.append(f"optim {name} is not modelled; estimated with AdamW")
    return "adamw"


def _layout(args, notes: list) -> dict:
    """TrainingArguments' deepspeed (a path or a dict), fsdp and fsdp_config, accumulation and world size."""
    world = int(getattr(args, "world_size", 1) or 1)
    par = {}
    ds = getattr(args, "deepspeed", None)
    fsdp = getattr(args, "fsdp", None)
    if ds:
        config = ds
        if isinstance(ds, str):
            with open(ds, encoding="utf-8") as fh:
                config = json.load(fh)
        par = deepspeed_parallelism(config, world)
    elif fsdp:
        cfg = dict(getattr(args, "fsdp_config", None) or {})
        get = lambda key, default=None: cfg.get(key, cfg.get("fsdp_" + key, default))  # noqa: E731
        names = [str(getattr(o, "value", o)).upper() for o in fsdp] if isinstance(fsdp, (list, tuple)) else []
        strategy = next((n for n in names if n in ("FULL_SHARD", "SHARD_GRAD_OP", "HYBRID_SHARD", "NO_SHARD")), None)
        offload = "OFFLOAD" in names or bool(get("cpu_offload", get("offload_params", False)))
        reshard = get("reshard_after_forward")
        par = fsdp_parallelism(strategy or "FULL_SHARD", offload or None, get("version", 2),
                               reshard if isinstance(reshard, bool) else None, world, notes)
    elif world > 1:
        par = {"data_parallel": world}
    if int(args.gradient_accumulation_steps) > 1:
        par["gradient_accumulation"] = int(args.gradient_accumulation_steps)
    return par


class PreflightCallback(TrainerCallback):
    """Runs ``preflight`` in on_train_begin: after the Trainer has built the run, before step 1. The
    sequence length is ``seq_len``, else the longest in the first batch the data loader makes."""

    def __init__(self, seq_len: int | None = None, gpu="auto", on_risk: str = "raise"):
        self.seq_len, self.gpu, self.on_risk = seq_len, gpu, on_risk
        self.result: dict | None = None

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        seq = self.seq_len or first_batch_length(train_dataloader, args.per_device_train_batch_size)
        self.result = preflight(args, model, seq_len=seq, gpu=self.gpu, on_risk=self.on_risk)


def first_batch_length(loader, batch_size: int) -> int:
    """The sequence length of a first batch: the loader's first ``batch_size`` examples through its
    collate function, with torch's random state restored afterwards (a masking collator draws from it), so
    that the training's own batches are unchanged."""
    import itertools
    import random

    import torch
    if loader is None:
        raise ValueError("pre-flight: no train dataloader to read the sequence length from; give seq_len=N")
    dataset = loader.dataset
    python_state = random.getstate()            # whole-word masking collators draw from Python's random too
    with torch.random.fork_rng(devices=[]):
        if isinstance(dataset, torch.utils.data.IterableDataset):
            examples = list(itertools.islice(iter(dataset), batch_size))
        else:
            examples = [dataset[i] for i in range(min(batch_size, len(dataset)))]
        batch = loader.collate_fn(examples) if loader.collate_fn is not None else examples
    random.setstate(python_state)
    ids = batch.get("input_ids", batch.get("inputs_embeds")) if isinstance(batch, dict) else batch
    if not hasattr(ids, "shape") or len(ids.shape) < 2:
        raise ValueError("pre-flight: the first batch has no input_ids tensor to read the length from; "
                         "give seq_len=N")
    length = int(ids.shape[1])
    logger.info("pre-flight: sequence length %d, from the first batch (a longer batch needs more memory)", length)
    return length
