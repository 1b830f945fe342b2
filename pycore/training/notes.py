"""What a training run's memory levers assume that its estimate cannot show: the host memory activation
offloading takes, and the rules behind torch.compile that are not verified on a GPU."""

from __future__ import annotations

from ..model.spec import ModelSpec
from .workload import Framework, Precision, Workload


def lever_notes(m: ModelSpec, w: Workload, p: Precision, f: Framework) -> list:
    """What the memory levers assume that the estimate cannot show: host memory, unverified rules."""
    notes = []
    if w.torch_compile:
        notes.append("torch.compile is modelled by rule compile-recomputes-pointwise (Inductor recomputes the "
                     "norms' casts, SwiGLU's product and rotary in backward): checked on the CPU for a frozen-weight "
                     "Llama layer, unverified against a GPU run")
    if w.activation_offload != "none":
        from .layers import layer_costs
        from .offload import host_bytes
        from .step import StageView, step_context
        ctx = step_context(m, w, p, f, StageView(recompute="full" if w.gradient_checkpointing else "none"))
        host = host_bytes(layer_costs(ctx, m), ctx.checkpointing)
        notes.append(f"activation offloading ({w.activation_offload}) keeps {host / 2 ** 30:.2f} GiB of activations "
                     "in pinned host memory (per GPU process), moved over PCIe each step")
    return notes
