"""Units: bytes per dtype, GiB (2**30) and GB (10**9), kept apart; and the integer search every
planner and engine uses (largest value that fits)."""

from __future__ import annotations

GiB = 1024 ** 3
MiB = 1024 ** 2
GB = 10 ** 9

# Bits per element. Sub-byte types (int4, nf4) keep their bits; bytes are rounded up per tensor.
DTYPE_BITS = {"fp32": 32, "bf16": 16, "fp16": 16, "fp8": 8, "int8": 8, "int4": 4, "nf4": 4}


def dtype_bytes(name: str) -> int:
    """Bytes per element for whole-byte dtypes."""
    bits = DTYPE_BITS[name]
    if bits % 8:
        raise ValueError(f"{name} is a sub-byte type; use DTYPE_BITS")
    return bits // 8


def largest(fits, lo: int, hi: int, doubling: bool = False) -> int:
    """The largest value in [lo, hi] for which ``fits`` holds, or lo - 1 when none does; ``fits`` must
    hold up to some value and fail above it (monotone). Plain: a bisection over (lo - 1, hi] that takes
    lo - 1 as fitting without asking. ``doubling``: ask lo first, then lo + 1, lo + 2, lo + 4, ... until
    one fails, and bisect that bracket: fewer calls when the answer is near lo in a wide range."""
    good, bad = _bracket(fits, lo, hi) if doubling else (lo - 1, hi + 1)
    while bad - good > 1:
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good


def _bracket(fits, lo: int, hi: int) -> tuple[int, int]:
    """(a value that fits or lo - 1, the first value above it known not to fit or hi + 1)."""
    if not fits(lo):
        return lo - 1, lo
    good, step = lo, 1
    while good < hi:
        probe = min(hi, lo + step)
        if not fits(probe):
            return good, probe
        good, step = probe, step * 2
    return good, hi + 1
