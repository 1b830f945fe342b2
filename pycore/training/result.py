"""One configuration's answer: the GPU's moments, its peak, the allocator's reserve and the verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from ..model.breakdown import Node, snapshot_tree
from ..model.params import lora_params, param_counts
from ..model.spec import ModelSpec
from .allocator import RESERVE_KINDS, reserve_kind, reserved_bytes
from .context import StepContext
from .timeline import Snapshot
from .workload import Framework, Hardware, Precision, Workload

# Categories that make up a rank's model states (ZeRO's term): what it holds between steps.
MODEL_STATE_CATEGORIES = ("weights", "gradients", "optimizer states")


@dataclass(frozen=True)
class Estimate:
    model: ModelSpec
    workload: Workload
    precision: Precision
    hardware: Hardware
    context: StepContext
    snapshots: tuple
    peak: Snapshot
    peak_allocated_bytes: int
    reserved_bytes: int
    device_total_bytes: int
    params: dict
    warnings: tuple
    layout: dict = field(default_factory=dict)      # degrees, GPUs and which rank is reported
    report: dict = field(default_factory=dict)      # the recipe's own figures, as the framework prints them
    host_bytes: int = 0                             # host memory per node (offload)
    not_estimated: tuple = ()                       # terms a model given only by its parameter count lacks
    outside_allocator: tuple = ()                   # (name, bytes) on the device but not in torch's allocator

    @property
    def fits(self) -> bool:
        """Whether the device total's band fits the card (its upper edge): ``verdict == "fits"``."""
        return self.verdict == "fits"

    @property
    def reserve_kind(self) -> str:
        """The kind of step whose share models the allocator's reserve (allocator.py RESERVE_KINDS): the
        class the reserve's and the device total's bands are fitted over."""
        w, c = self.workload, self.context
        training = c.training if c else w.mode != "inference"
        ckpt = c.checkpointing if c else bool(getattr(w, "gradient_checkpointing", False))
        base = c.base_trainable if c else w.mode == "full"
        return RESERVE_KINDS[reserve_kind(training, ckpt, base)]

    @cached_property
    def verdict(self) -> str:
        """fits, at risk or does not fit, from the bands of the device total (pycore/accuracy/verdicts.py)."""
        from ..accuracy.verdicts import estimate_verdict
        return estimate_verdict(self)

    @property
    def model_states_bytes(self) -> int:
        """Weights, gradients and optimizer states on the reported rank, at the optimizer step
        (when all of them exist)."""
        step = next((s for s in self.snapshots if s.phase == "optimizer step"), self.peak)
        return sum(sum(items.values()) for cat, items in step.parts if cat in MODEL_STATE_CATEGORIES)

    def breakdown(self) -> Node:
        outside = sum(b for _, b in self.outside_allocator)
        return snapshot_tree(self.peak, self.reserved_bytes - self.peak_allocated_bytes,
                             self.device_total_bytes - self.reserved_bytes - outside, self.outside_allocator)


def param_summary(m: ModelSpec, w: Workload) -> dict:
    counts = param_counts(m)
    params = {"total": sum(counts.values()), "by_component": counts}
    if w.mode in ("lora", "qlora"):
        params["adapters"] = lora_params(m, w.lora_rank, w.lora_targets)
        params["trainable"] = params["adapters"]
    elif w.mode == "peft":
        from .adapters import plan_for
        params["adapters"] = params["trainable"] = plan_for(m, w.peft_config).trainable
    elif w.mode == "full":
        params["trainable"] = params["total"]
    else:
        params["trainable"] = 0
    return params


def make_estimate(m: ModelSpec, w: Workload, p: Precision, hw: Hardware, f: Framework, ctx: StepContext,
                  snaps: list, warnings=(), outside: tuple = (), trace: tuple = (), shares=None, **extra) -> Estimate:
    """The estimate from a GPU's moments: the peak is the largest, the reserve the allocator's
    high-water mark (replayed from ``trace`` where the recipe gives one), the device total adds the
    CUDA context. ``shares``: a recipe's own reserve shares (training/allocator.py RECIPE_SHARES)."""
    peak = max(snaps, key=lambda s: s.total())
    allocated = peak.total()
    reserved = reserved_bytes(allocated, snaps, ctx, trace, f.alloc_conf, shares)
    if f.alloc_conf and not trace:
        warnings = (*warnings, "framework.alloc_conf is replayed for training with the hf recipe only; this "
                               "reserve is the measured share of the step's churn (torch's default settings)")
    return Estimate(model=m, workload=w, precision=p, hardware=hw, context=ctx, snapshots=tuple(snaps), peak=peak,
                    peak_allocated_bytes=allocated, reserved_bytes=reserved,
                    device_total_bytes=reserved + f.context_bytes() + sum(b for _, b in outside),
                    params=param_summary(m, w), warnings=tuple(warnings), outside_allocator=tuple(outside), **extra)
