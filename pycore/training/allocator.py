"""PyTorch's caching allocator: what it reserves beyond what is allocated.

torch.cuda.memory_reserved() exceeds max_memory_allocated() because the allocator
(c10/cuda/CUDACachingAllocator.cpp) rounds requests (512 B small, 2 MiB above 1 MiB),
carves small tensors from 2 MiB and 20 MiB segments, and cannot reuse a freed block for a
larger request: memory freed by tensors that come and go is held for later reuse.
"""

from __future__ import annotations

from dataclasses import dataclass

from .caching import parse_alloc_conf, replay

# Under torch's default settings (framework.alloc_conf unset), and for the recipes that give no trace
# (inference, DeepSpeed, FSDP2, Megatron), the reserve is the measured share below. With alloc_conf set,
# single-GPU training replays the caching allocator (caching.py, trace.py). The replay is not the default:
# leave-one-family-out coverage of the reserve's band is 40/44 with median half-width 13.5% (the shares:
# 39/44, 6.5%), and it costs 1-3 ms per estimate, which the searches' 0.1 s budget cannot hold
# (scripts/calibrate.py --alloc-conf expandable_segments:False; docs/accuracy.md).
# Reserved beyond the peak, as a fraction of the memory that changes during the step (the peak minus
# weights, optimizer states and gradients), by kind of step: training keeps its activations until
# backward (little churn); checkpointing recomputes each layer and frees it again; generate re-allocates
# every layer's cache at each decode step. Fitted by scripts/calibrate.py (fit_shares): for each measured
# run of shared/calibration, the share that makes the estimated reserve equal the measured one; each
# constant is the median over its kind's runs (20 training, 9 full-training checkpointing, 4 LoRA
# checkpointing, 11 inference runs). tests/accuracy/test_verdicts.py holds them to that fit, and the
# held-out coverage refits them without each family in turn.
SLACK_TRAINING = 0.055
SLACK_CHECKPOINTING = 0.573
SLACK_INFERENCE = 0.299
SLACK_RECOMPUTE_FROZEN = 0.193   # LoRA/QLoRA with checkpointing: the recomputed activations' share


@dataclass(frozen=True)
class Shares:
    """The reserve's share of churn by kind of step (the SLACK_* above, or a recipe's own)."""
    training: float
    checkpointing: float
    recompute_frozen: float
    inference: float


def fitted_shares() -> Shares:
    """The shares fitted on the single-GPU calibration (read when called, so calibrate.py can refit them)."""
    return Shares(SLACK_TRAINING, SLACK_CHECKPOINTING, SLACK_RECOMPUTE_FROZEN, SLACK_INFERENCE)


# DeepSpeed and FSDP2 (parallel/deepspeed.py, fsdp2.py) keep the shares of round 1 (medians of every
# training, checkpointing and inference run of the single-GPU set then, set once by hand): no multi-GPU
# run measures the reserve beside the allocated peak, so nothing fits a recipe's own, and the single-GPU
# fit above (full training with checkpointing at 0.573, a median over runs from 0 to 3) puts torchtitan's
# published Llama 3.1 8B and 405B reserves out of tolerance (tests/data/golden_parallel_torchtitan.json),
# where round 1's 0.27 holds them. Borrowed, not fitted: the multi-GPU references score them.
RECIPE_SHARES = Shares(training=0.05, checkpointing=0.27, recompute_frozen=0.27, inference=0.31)
# Allocated once and kept: no churn, no allowance (framework buffers: DDP's gradient buckets,
# DeepSpeed's reduce bucket, FSDP's persistent parameter copies).
STATIC_CATEGORIES = ("weights", "optimizer states", "gradients", "framework buffers")
# With a frozen base (LoRA, QLoRA) and checkpointing, what is allocated and freed again per layer is the
# recomputed activations: backward allocates no weight gradient between them (the adapters' are small),
# and the logits and the loss are allocated once a step, as without checkpointing. So the recomputed
# activations take their own share (SLACK_RECOMPUTE_FROZEN) and the rest of the churn takes the training
# share. Full training keeps one share of all churn: its weight gradients, allocated layer by layer
# between the recomputed blocks, split them (the replay, caching.py, shows both: LoRA with checkpointing
# within 0.03 of its churn, full training not).
RECOMPUTED_CATEGORIES = ("activations",)


def reserved_bytes(allocated: int, snapshots, ctx, trace: tuple = (), alloc_conf: str = "",
                   shares: Shares | None = None) -> int:
    """The allocator's high-water mark. With a trace of the step's largest tensors (trace.py), the
    caching allocator is replayed (caching.py) and its segments beyond the live tensors are added to
    the allocated peak. Without one, blocks cached at the busiest moment of the step stay reserved
    afterwards, so the reserve is the largest over all moments' shares of churn."""
    if trace:
        return allocated + replayed_overhead_bytes(trace, alloc_conf)
    sh = shares or fitted_shares()
    return max(allocated, max(_reserved_at(s, ctx, sh) for s in snapshots))


def replayed_overhead_bytes(trace: tuple, alloc_conf: str = "") -> int:
    """What the replayed allocator reserves beyond the most its tensors hold at once."""
    r = replay(trace, parse_alloc_conf(alloc_conf))
    return max(0, r.peak_reserved_bytes - r.peak_allocated_bytes)


# The kinds of step the shares model, by the share that models each (Shares' fields), in words: the
# reserve's and the device total's bands are fitted over the runs of one kind (accuracy/verdicts.py).
RESERVE_KINDS = {"training": "training without checkpointing",
                 "checkpointing": "full training with checkpointing",
                 "recompute_frozen": "frozen base with checkpointing",
                 "inference": "inference"}


def reserve_kind(training: bool, checkpointing: bool, base_trainable: bool) -> str:
    """Which share models a step's reserve (a Shares field): inference; training without checkpointing
    (full, LoRA or QLoRA alike: activations kept until backward); full training with checkpointing;
    a frozen base with checkpointing (only the recomputed activations churn per layer)."""
    if not training:
        return "inference"
    if not checkpointing:
        return "training"
    return "checkpointing" if base_trainable else "recompute_frozen"


def _reserved_at(snapshot, ctx, sh: Shares) -> int:
    static = 0
    for category, items in snapshot.parts:
        if category in STATIC_CATEGORIES:
            static += sum(items.values())
    total = snapshot.total()
    dynamic = max(0, total - static)
    # the recomputation churn happens in forward and backward only; optimizer.step()'s temporaries are
    # allocated once and freed together, as without checkpointing
    recomputing = ctx.checkpointing and snapshot.phase in ("forward", "backward")
    kind = reserve_kind(ctx.training, recomputing, ctx.base_trainable)
    if kind != "recompute_frozen":
        return total + int(dynamic * getattr(sh, kind))
    recomputed = min(dynamic, sum(sum(items.values()) for cat, items in snapshot.parts
                                  if cat in RECOMPUTED_CATEGORIES))
    return total + int(recomputed * sh.recompute_frozen) + int((dynamic - recomputed) * sh.training)
