"""Data parallelism with ZeRO sharding: what each GPU holds of the model states.

Rajbhandari et al. 2020 (ZeRO, section 5 and Figure 1): stage 1 partitions the optimizer
states over the N data-parallel ranks, stage 2 also the gradients, stage 3 also the
parameters, which are gathered one layer at a time for compute. Activations are not
sharded: each rank runs its own micro-batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import InputError
from ..schema import integer, spec, validate
from ..workload import TRAINING_MODES
from ..training.timeline import Static

# ZeRO-3 (DeepSpeed, FSDP) holds the gathered parameters of the layer being computed and of the
# one prefetched next: two layers' worth of full weights.
ZERO3_GATHERED_LAYERS = 2


@dataclass(frozen=True)
class Parallelism:
    data_parallel: int = spec(1, integer(1, 65536, modes=TRAINING_MODES, doc="data-parallel GPUs"))
    zero_stage: int = spec(0, integer(0, 3, modes=TRAINING_MODES,
                                      doc="ZeRO stage: shard states (1), gradients (2), weights (3)",
                                      labels=((0, "none (DDP)"), (1, "stage 1: optimizer states"),
                                              (2, "stage 2: + gradients"), (3, "stage 3: + weights"))))


def validate_parallelism(par: Parallelism, training: bool) -> None:
    validate(par, "parallelism")
    if not training and (par.zero_stage or par.data_parallel > 1):
        raise InputError("parallelism", "applies to training; an inference replica holds the whole model")


def _shard(n_bytes: int, ranks: int) -> int:
    return -(-n_bytes // ranks)


def apply_parallelism(st: Static, par: Parallelism, layer_weight_bytes: int) -> Static:
    """Per-GPU static memory under ``par``."""
    n, stage = par.data_parallel, par.zero_stage
    if n == 1:
        return st
    weights = dict(st.weights)
    if stage == 0:
        # DistributedDataParallel's reducer allocates gradient buckets the size of all gradients
        # (gradient_as_bucket_view=False by default, torch/nn/parallel/distributed.py).
        weights["DDP gradient buckets"] = st.grads_other + st.grads_per_layer * st.n_layers
        return replace(st, weights=weights)
    states, temp = _shard(st.optimizer_states, n), _shard(st.optimizer_temp, n)
    grads = dict(grads_per_layer=st.grads_per_layer, grads_other=st.grads_other, grads_head=st.grads_head)
    if stage >= 2:
        grads = {k: _shard(v, n) for k, v in grads.items()}
    if stage >= 3:
        weights = {k: _shard(v, n) for k, v in weights.items()}
        weights["gathered parameters (ZeRO-3)"] = min(ZERO3_GATHERED_LAYERS, st.n_layers) * layer_weight_bytes
    return replace(st, weights=weights, optimizer_states=states, optimizer_temp=temp, **grads)
