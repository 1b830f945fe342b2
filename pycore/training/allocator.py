"""PyTorch's caching allocator: what it reserves beyond what is allocated.

torch.cuda.memory_reserved() exceeds max_memory_allocated() because the allocator
(c10/cuda/CUDACachingAllocator.cpp) rounds requests (512 B small, 2 MiB above 1 MiB),
carves small tensors from 2 MiB and 20 MiB segments, and cannot reuse a freed block for a
larger request: memory freed by tensors that come and go is held for later reuse.
"""

from __future__ import annotations

from .caching import parse_alloc_conf, replay

# Under torch's default settings (framework.alloc_conf unset), and for the recipes that give no trace
# (inference, DeepSpeed, FSDP2, Megatron), the reserve is the measured share below. With alloc_conf set,
# single-GPU training replays the caching allocator (caching.py, trace.py). The replay is not the default:
# leave-one-family-out coverage of the reserve's band is 39/44 with median half-width 12.3% (the share:
# 39/44, 6.2%), and it costs 1-3 ms per estimate, which the searches' 0.1 s budget cannot hold
# (scripts/calibrate.py --alloc-conf expandable_segments:False; docs/accuracy.md).
# Reserved beyond the peak, as a fraction of the memory that changes during the step (the peak
# minus weights, optimizer states and gradients). Medians of (peak_reserved - peak_allocated) /
# that memory over the ok cases of shared/calibration, by kind of step (20, 13 and 11 cases):
# training keeps its activations until backward (little churn); checkpointing recomputes each
# layer and frees it again; generate re-allocates every layer's cache at each decode step.
SLACK_TRAINING = 0.05
SLACK_CHECKPOINTING = 0.27
SLACK_INFERENCE = 0.31
# Allocated once and kept: no churn, no allowance (framework buffers: DDP's gradient buckets,
# DeepSpeed's reduce bucket, FSDP's persistent parameter copies).
STATIC_CATEGORIES = ("weights", "optimizer states", "gradients", "framework buffers")
# With a frozen base (LoRA, QLoRA) and checkpointing, what is allocated and freed again per layer is the
# recomputed activations: backward allocates no weight gradient between them (the adapters' are small),
# and the logits and the loss are allocated once a step, as without checkpointing. So the checkpointing
# share applies to the activations only and the rest of the churn takes the training share. Full training
# keeps the share of all churn: its weight gradients, allocated layer by layer between the recomputed
# blocks, split them (the replay, caching.py, shows both: LoRA with checkpointing within 0.03 of its
# churn, full training not). Leave-one-family-out, with the same three shares (scripts/calibrate.py): the
# reserve's band 39/44 inside at median half-width 6.2% (all churn at 0.27: 39/44 at 9.4%), the device
# total's median error 2.3% (2.9%).
RECOMPUTED_CATEGORIES = ("activations",)


def reserved_bytes(allocated: int, snapshots, ctx, trace: tuple = (), alloc_conf: str = "") -> int:
    """The allocator's high-water mark. With a trace of the step's largest tensors (trace.py), the
    caching allocator is replayed (caching.py) and its segments beyond the live tensors are added to
    the allocated peak. Without one, blocks cached at the busiest moment of the step stay reserved
    afterwards, so the reserve is the largest over all moments' shares of churn."""
    if trace:
        return allocated + replayed_overhead_bytes(trace, alloc_conf)
    return max(allocated, max(_reserved_at(s, ctx) for s in snapshots))


def replayed_overhead_bytes(trace: tuple, alloc_conf: str = "") -> int:
    """What the replayed allocator reserves beyond the most its tensors hold at once."""
    r = replay(trace, parse_alloc_conf(alloc_conf))
    return max(0, r.peak_reserved_bytes - r.peak_allocated_bytes)


def _reserved_at(snapshot, ctx) -> int:
    static = 0
    for category, items in snapshot.parts:
        if category in STATIC_CATEGORIES:
            static += sum(items.values())
    total = snapshot.total()
    dynamic = max(0, total - static)
    if not ctx.training:
        return total + int(dynamic * SLACK_INFERENCE)
    if not (ctx.checkpointing and snapshot.phase in ("forward", "backward")):
        # optimizer.step(): its temporaries are allocated once and freed together
        return total + int(dynamic * SLACK_TRAINING)
    # the recomputation churn happens in forward and backward only
    if ctx.base_trainable:
        return total + int(dynamic * SLACK_CHECKPOINTING)
    recomputed = min(dynamic, sum(sum(items.values()) for cat, items in snapshot.parts
                                  if cat in RECOMPUTED_CATEGORIES))
    return total + int(recomputed * SLACK_CHECKPOINTING) + int((dynamic - recomputed) * SLACK_TRAINING)
