"""PyTorch's caching allocator: what it reserves beyond what is allocated.

torch.cuda.memory_reserved() exceeds max_memory_allocated() because the allocator
(c10/cuda/CUDACachingAllocator.cpp) rounds requests (512 B small, 2 MiB above 1 MiB),
carves small tensors from 2 MiB and 20 MiB segments, and cannot reuse a freed block for a
larger request: memory freed by tensors that come and go is held for later reuse.
"""

from __future__ import annotations

# Reserved beyond the peak, as a fraction of the memory that changes during the step (the peak
# minus weights and optimizer states). Medians over shared/calibration, by kind of step:
# training keeps its activations until backward (little churn); checkpointing recomputes each
# layer and frees it again; generate re-allocates every layer's cache at each decode step.
SLACK_TRAINING = 0.06
SLACK_CHECKPOINTING = 0.25
SLACK_INFERENCE = 0.45


def reserved_bytes(allocated: int, peak, ctx) -> int:
    static = 0
    for category, items in peak.parts:
        if category in ("weights", "optimizer states"):
            static += sum(items.values())
    dynamic = max(0, allocated - static)
    if not ctx.training:
        slack = SLACK_INFERENCE
    elif ctx.checkpointing:
        slack = SLACK_CHECKPOINTING
    else:
        slack = SLACK_TRAINING
    return allocated + int(dynamic * slack)
