"""PyTorch's context parallelism as torchtitan runs it (recipe fsdp2): the buffers ring attention
holds while one layer's attention runs, replacing the point-to-point model of the other recipes.

torch/distributed/tensor/experimental/_attention.py (the same code at torch 1963fc8, the build of
torchtitan's published runs, 2024-12, and at 2.14.1, _context_parallel/_attention.py 273-301 and
317-665):

- ``_templated_ring_attention`` concatenates the local K and V (``torch.cat([key.flatten(),
  value.flatten()])``) and hands them to the rotater. With ``rotate_method="allgather"`` (the default
  of _ContextParallelOptions, and of torchtitan's ``context_parallel_rotate_method`` at 9dec370,
  0.2.0 and 0.2.2) ``_AllGatherRotater`` all-gathers them once and keeps the aggregate, K and V of
  every CP rank, until the ring loop ends: cp x the local K and V. This is the term that grows with
  the CP degree at a fixed number of tokens per GPU. ``alltoall`` keeps one received K/V instead.
- ``_templated_ring_attention_backward`` gathers K and V again the same way, and holds fp32
  accumulators for dQ, dK, dV (``accum_dtype = torch.float32``, convert_to_f32 True) and the fp32
  dK/dV concatenation it sends round the ring (``_RotateMethod.ALL_TO_ALL`` for gradients) and the one
  it receives.

The K and V that reach SDPA have n_heads heads (per TP rank) until torchtitan repeated them there:
``keys = repeat_kv(xk, self.n_rep)`` before ``F.scaled_dot_product_attention`` (models/llama/model.py
201-209 @9dec370), removed by PR #2259 (ff0829c1, 2026-01-27, "GQA without kv repeats", first in
0.2.2): rule ``torchtitan-repeats-kv``.
"""

from __future__ import annotations

from dataclasses import replace

from ..model.spec import ModelSpec
from ..training.activations import FP32, LayerCost
from ..versions import holds, version_tuple

GATHERED = "ring attention: K and V of every CP rank (all-gather rotater)"
RECEIVED = "ring attention: received K and V (all-to-all rotater)"
SENT = "ring attention: local K and V concatenated to send"
GRAD_ACCUM = "ring attention: fp32 accumulators (merged output; dQ, dK, dV in backward)"
GRAD_RING = "ring attention: fp32 dK/dV sent and received (backward)"


def sdpa_kv_heads(m: ModelSpec, version: str) -> int:
    """The K/V heads SDPA sees on one TP rank (``m`` is the rank's local model)."""
    v = version_tuple(version, "parallelism.options.torchtitan_version", "a torchtitan version", "0.2.2")
    return m.n_heads if holds("torchtitan-repeats-kv", v) else m.n_kv_heads


def ring_buffers(tokens: int, cp: int, m: ModelSpec, compute_bytes: int, version: str, rotate: str) -> tuple:
    """(name, bytes) in flight while one layer's ring attention runs, forward or backward (the
    larger, backward, is taken for both: the timeline holds one set per layer moment)."""
    kv = 2 * tokens * sdpa_kv_heads(m, version) * m.head_dim           # K and V elements, local
    q = tokens * m.n_heads * m.head_dim
    out = [(SENT, compute_bytes * kv)]
    if rotate == "allgather":
        out.append((GATHERED, compute_bytes * kv * cp))
    else:
        out.append((RECEIVED, compute_bytes * kv))
    out.append((GRAD_ACCUM, FP32 * (q + kv)))
    out.append((GRAD_RING, 2 * FP32 * kv))
    return tuple(out)


def with_torch_ring(layers: list[LayerCost], buffers: tuple) -> list[LayerCost]:
    """Each layer with PyTorch's ring-attention buffers in place of the point-to-point ones."""
    out = []
    for lc in layers:
        kept = tuple((k, b) for k, b in lc.comm_buffers if not k.startswith("ring attention"))
        out.append(replace(lc, comm_buffers=buffers + kept))
    return out
