"""Pre-flight for Lightning: a Callback that checks the run at the first training batch, before its
forward pass.

    trainer = L.Trainer(..., callbacks=[PreflightCallback(gpu="auto")])

The LightningModule holds a transformers model (itself, or as an attribute; a peft PeftModel works too).
Lightning is imported by this module (the Callback base class); the core never imports it."""

from __future__ import annotations

try:                                    # the unified package, else the standalone one
    from lightning.pytorch import Callback
except ImportError:                     # pragma: no cover - depends on what is installed
    from pytorch_lightning import Callback

from .accelerate import batch_shape
from .common import (PreflightError, build_request, deepspeed_parallelism, fsdp_parallelism, model_part,
                     optimizer_name, precision_part, run)

__all__ = ["PreflightCallback", "PreflightError"]
# Trainer(precision=...) -> (autocast dtype, weights cast to) (lightning/fabric/plugins/precision/).
_PRECISION = {"bf16-mixed": ("bf16", None), "16-mixed": ("fp16", None), "bf16-true": (None, "bf16"),
              "16-true": (None, "fp16"), "32-true": (None, None), "32": (None, None), "bf16": ("bf16", None),
              "16": ("fp16", None)}


class PreflightCallback(Callback):
    """Estimates at the first training batch (its shape gives the batch size and, unless ``seq_len`` is
    given, the length); raises PreflightError when the run does not fit (on_risk="warn" warns)."""

    def __init__(self, seq_len: int | None = None, gpu="auto", on_risk: str = "raise", model=None):
        self.seq_len, self.gpu, self.on_risk, self.model = seq_len, gpu, on_risk, model
        self.result: dict | None = None
        self._done = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._done:
            return
        self._done = True
        self.result = check(trainer, self.model or find_hf_model(pl_module), batch, self.seq_len, self.gpu,
                            self.on_risk)


def check(trainer, model, batch, seq_len, gpu, on_risk) -> dict:
    notes: list = []
    info = model_part(model, notes)
    batch_size, length = batch_shape(batch)
    workload = {"batch_size": batch_size, "seq_len": seq_len or length}
    if trainer.optimizers:
        name = optimizer_name(trainer.optimizers[0], notes)
        if name:
            workload["optimizer"] = name
    precision_name = str(trainer.precision)
    mixed, cast = _PRECISION.get(precision_name, (None, None))
    if precision_name not in _PRECISION:
        notes.append(f"precision {precision_name} is not modelled; estimated in the weights' dtype")
    par = _layout(trainer, notes)
    if par.get("recipe") == "deepspeed" and (mixed or cast):
        precision = {"weights": mixed or cast}
    else:
        precision = precision_part(cast or info["dtype"], mixed, info["workload"]["mode"], notes)
    return run(build_request(info, workload, precision, par, gpu), on_risk, notes, info["parameters"])


def _layout(trainer, notes: list) -> dict:
    world = int(trainer.world_size)
    strategy = trainer.strategy
    kind = type(strategy).__name__
    if kind == "DeepSpeedStrategy":
        par = deepspeed_parallelism(dict(strategy.config), world)
    elif kind == "FSDPStrategy":
        name = getattr(getattr(strategy, "sharding_strategy", None), "name", "FULL_SHARD")
        offload = getattr(getattr(strategy, "cpu_offload", None), "offload_params", False)
        par = fsdp_parallelism(name, offload or None, 1, None, world, notes)
    else:
        par = {"data_parallel": world} if world > 1 else {}
    if int(trainer.accumulate_grad_batches) > 1:
        par["gradient_accumulation"] = int(trainer.accumulate_grad_batches)
    return par


def find_hf_model(module):
    """The transformers model a LightningModule trains: a PeftModel first, else the first module with a
    transformers config (the LightningModule itself included)."""
    candidates = [module] + [m for _, m in module.named_modules()]
    for m in candidates:
        if getattr(m, "peft_config", None) and hasattr(m, "get_base_model"):
            return m
    for m in candidates:
        if hasattr(getattr(m, "config", None), "to_dict"):
            return m
    raise TypeError("pre-flight found no transformers model in the LightningModule; give "
                    "PreflightCallback(model=...)")
