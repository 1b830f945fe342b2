"""Units: bytes per dtype, GiB (2**30) and GB (10**9), kept apart."""

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
