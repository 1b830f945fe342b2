"""vLLM's extensible KV cache (0.34): the cache is sized from the memory measured free after warmup and
CUDA-graph capture, not from the profile run's estimate, and the default gpu_memory_utilization is 1.0.

Source: the vllm 0.34.0 sdist (absent in 0.33.0, whose config/cache.py has no enable_extensible_kv_cache):
- config/cache.py:216-234, 495-501: gpu_memory_utilization defaults to None, resolved to 1.0 with the
  extensible KV cache and 0.92 without; enable_extensible_kv_cache defaults on for CUDA and ROCm unless
  --kv-cache-memory is set (config/vllm.py:3252-3254);
- v1/worker/utils.py:734-799 request_memory: requested = ceil(total x utilization); with the extensible
  cache the check against the free memory at start-up is skipped (the budget is only a cap);
- v1/worker/gpu_worker.py:760-775: the profiled peak kept free is the transient activation peak plus the
  CUDA-graph estimate (peak_activation_memory); warmup keeps it as reserved_headroom_bytes (:949-952);
- v1/worker/extensible_kv_cache.py:592-618 measure_kv_cache_bytes: non_kv_used = the memory taken
  since the start-up snapshot outside the KV cache (weights, non-torch, captured graphs); headroom = free
  memory after warmup plus what the cache already committed; margin = max(1 GiB, 0.75 x transient peak);
  available = min(requested - non_kv_used, headroom - margin) - transient peak.
"""

from __future__ import annotations

from ..versions import holds

# extensible_kv_cache.py:64-65 @0.34.0 (ROCm keeps a 3 GiB floor; this tool models CUDA).
KV_CACHE_MARGIN_FLOOR_BYTES = 1 << 30
KV_CACHE_MARGIN_FRACTION = 0.75
EXTENSIBLE_UTILIZATION = 1.0      # config/cache.py:499-500 resolved_gpu_memory_utilization


def extensible(v, s) -> bool:
    """Whether the KV cache is sized after warmup: on by default from 0.34 unless --kv-cache-memory is
    given or the user turned it off."""
    if s.kv_cache_memory_bytes is not None or not holds("vllm-extensible-kv-cache", v):
        return False
    return s.enable_extensible_kv_cache is not False


def extensible_budget(requested: int, init_free: int, non_kv_used: int, transient_peak: int) -> dict:
    """The KV bytes of measure_kv_cache_bytes and the two amounts it keeps free, as named parts:
    {'available': ..., 'margin': ..., 'transient': ...} (all bytes; available never below 0)."""
    headroom = init_free - non_kv_used
    margin = max(KV_CACHE_MARGIN_FLOOR_BYTES, int(transient_peak * KV_CACHE_MARGIN_FRACTION))
    available = min(requested - non_kv_used, headroom - margin) - transient_peak
    return {"available": max(available, 0), "margin": margin, "transient": transient_peak}
