"""Memory against batch size, sequence length or the number of GPUs: one request, every point.

Each point is a full estimate of the request with one field changed, and carries its terms (the
terms of the peak allocation, then the allocator reserve and the CUDA context, which add up to the
device total), so that a chart can stack them and show any point's breakdown. The first value that
does not fit is the out-of-memory point.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..data.catalog import term_key
from ..errors import InputError, MAX_TOKENS
from ..estimate import estimate
from ..schema import choice, integer, spec

MAX_POINTS = 48
SWEEP_FIELDS = ("batch_size", "seq_len", "gpus")


@dataclass(frozen=True)
class SweepQuery:
    """What the sweep varies and over which values (powers of two from ``start`` when not listed)."""

    field: str = spec("batch_size", choice(SWEEP_FIELDS, doc="the value on the horizontal axis "
                                                             "(gpus: the data-parallel degree of the layout)"))
    start: int = spec(1, integer(1, MAX_TOKENS, doc="first value"))
    stop: int | None = spec(None, integer(1, MAX_TOKENS, nullable=True,
                                          doc="last value (default: 64 sequences, 128k tokens, 1,024 GPUs)"))
    points: int = spec(16, integer(2, MAX_POINTS, doc="at most this many values, doubling from start"))


_DEFAULT_STOP = {"batch_size": 64, "seq_len": 131072, "gpus": 1024}


def values_of(q: SweepQuery) -> list[int]:
    stop = q.stop if q.stop is not None else max(q.start, _DEFAULT_STOP[q.field])
    if stop < q.start:
        raise InputError("sweep.stop", f"must be at least sweep.start ({q.start}), got {stop}")
    out, v = [], q.start
    while v <= stop and len(out) < q.points:
        out.append(v)
        v *= 2
    return out


def stack_terms(e) -> list[dict]:
    """The stack of one point (or layout), each term with its key (catalog.term_entries: the chart's colours)."""
    tree = e.breakdown()
    nodes = []
    for node in tree.children:
        nodes.extend(node.children if node.children and node.name == "allocated at peak" else [node])
    return [{"name": n.name, "key": n.key or term_key(n.name), "bytes": n.bytes} for n in nodes]


def run_sweep(req, q: SweepQuery) -> dict:
    """Every point of the sweep, the GPU's capacity and the first value that does not fit."""
    points = []
    oom_at = fits_from = None
    for v in values_of(q):
        w, par = req.workload, req.parallelism
        try:
            if q.field == "gpus":
                par = replace(par, data_parallel=v)
            else:
                w = replace(w, **{q.field: v})
                if w.batch_size * w.seq_len > MAX_TOKENS:
                    break
            e = estimate(req.model, w, req.precision, req.hardware, req.framework, par)
        except InputError as exc:
            points.append({"value": v, "error": exc.as_dict()})
            continue
        terms = stack_terms(e)
        assert sum(t["bytes"] for t in terms) == e.device_total_bytes      # the stack adds up to the total
        points.append({"value": v, "device_total_bytes": e.device_total_bytes,
                       "peak_allocated_bytes": e.peak_allocated_bytes, "fits": e.fits, "verdict": e.verdict, "terms": terms})
        if not e.fits and oom_at is None:
            oom_at = v
        if e.fits and fits_from is None:
            fits_from = v
    # batch and length: the first value that runs out of memory; GPUs: the first count that fits
    return {"field": q.field, "capacity_bytes": req.hardware.memory_bytes, "points": points,
            "oom_at": oom_at if q.field != "gpus" else None, "fits_from": fits_from if q.field == "gpus" else None}
