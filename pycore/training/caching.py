"""PyTorch's CUDA caching allocator, replayed: the segments a sequence of allocations and frees reserves.

Follows c10/cuda/CUDACachingAllocator.cpp (DeviceCachingAllocator: round_size, get_allocation_size,
get_free_block, should_split, free_block/try_merge_blocks, and the expandable segments of its Note
[Expandable Segments]), as read from pytorch/pytorch at commit 001074d in the project's source index
(constants at the head of namespace Native; the release that commit belongs to, and whether other
releases differ, was not checked). Only the large pool is replayed: the step's largest
tensors (activations, logits, gradients, optimizer states) are all above 1 MiB; tensors of 1 MiB or less
are packed into 2 MiB small-pool segments and do not fragment the large pool.

PYTORCH_CUDA_ALLOC_CONF (c10/cuda/CUDAAllocatorConfig.cpp, parseArgs) is an input: expandable_segments,
max_split_size_mb, garbage_collection_threshold and roundup_power2_divisions.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass
from functools import lru_cache

from ..errors import InputError

MiB = 1 << 20
# CUDACachingAllocator.cpp, namespace Native (kLargeBuffer just above it):
K_MIN_BLOCK_SIZE = 512             # kMinBlockSize: all sizes are rounded to at least 512 bytes
K_SMALL_SIZE = 1 * MiB             # kSmallSize: largest "small" allocation
K_SMALL_BUFFER = 2 * MiB           # kSmallBuffer: small allocations are packed in 2 MiB segments
K_LARGE_BUFFER = 20 * MiB          # kLargeBuffer: allocations between 1 and 10 MiB share 20 MiB segments
K_MIN_LARGE_ALLOC = 10 * MiB       # kMinLargeAlloc
K_ROUND_LARGE = 2 * MiB            # kRoundLarge: larger segments are rounded up to 2 MiB
# Note [Expandable Segments]: "we use 2MiB pages for our small pool and 20MiB pages for our large pool".
EXPANDABLE_LARGE_PAGE = 20 * MiB
# CUDAAllocatorConfig.cpp: max_split_size_mb must exceed kLargeBuffer / MiB (20); its largest accepted value
# is the size_t limit, i.e. no limit.
MIN_MAX_SPLIT_MB = 20
MAX_MAX_SPLIT_MB = 1 << 30
FIELDS = {"expandable_segments": "expandable_segments", "max_split_size_mb": "max_split_bytes",
          "garbage_collection_threshold": "garbage_collection_threshold",
          "roundup_power2_divisions": "roundup_power2_divisions"}
KEYS = tuple(FIELDS)


@dataclass(frozen=True)
class AllocConf:
    """The PYTORCH_CUDA_ALLOC_CONF settings the replay follows (defaults: torch's)."""

    expandable_segments: bool = False
    max_split_bytes: int | None = None          # None: every block may be split
    garbage_collection_threshold: float = 0.0   # only acts with set_per_process_memory_fraction (set_fraction)
    roundup_power2_divisions: int = 0


@lru_cache(maxsize=64)
def parse_alloc_conf(text: str, where: str = "framework.alloc_conf") -> AllocConf:
    """``expandable_segments:True,max_split_size_mb:512`` -> AllocConf; an unknown key or a bad value is an
    InputError naming the field (torch itself rejects them at start-up: TORCH_CHECK in parseArgs)."""
    out = {}
    for item in (t.strip() for t in (text or "").split(",")):
        if not item:
            continue
        key, sep, value = (s.strip() for s in item.partition(":"))
        if not sep or key not in KEYS:
            raise InputError(where, f"{item!r}: expected key:value with key one of {', '.join(KEYS)}")
        out[FIELDS[key]] = _value(key, value, where)
    return AllocConf(**out)


def _value(key: str, value: str, where: str):
    if key == "expandable_segments":
        if value not in ("True", "False"):
            raise InputError(where, f"expandable_segments must be True or False, got {value!r}")
        return value == "True"
    if key == "garbage_collection_threshold":
        try:
            x = float(value)
        except ValueError:
            x = -1.0
        if not 0.0 < x < 1.0:
            raise InputError(where, f"garbage_collection_threshold must be between 0 and 1 (exclusive), got {value!r}")
        return x
    if not value.isdigit():
        raise InputError(where, f"{key} must be a whole number, got {value!r}"
                         + (" (the bracketed per-size list is not modelled)" if value.startswith("[") else ""))
    n = int(value)
    if key == "max_split_size_mb":
        if not MIN_MAX_SPLIT_MB < n <= MAX_MAX_SPLIT_MB:
            raise InputError(where, f"max_split_size_mb must be above {MIN_MAX_SPLIT_MB}, got {n}")
        return n * MiB
    if n & (n - 1) or not 1 <= n <= 64:
        raise InputError(where, f"roundup_power2_divisions must be a power of 2 from 1 to 64, got {n}")
    return n


def round_size(size: int, conf: AllocConf = AllocConf()) -> int:
    """round_size(): 512-byte multiples, or the next of ``divisions`` steps between powers of two."""
    if size <= K_MIN_BLOCK_SIZE:
        return K_MIN_BLOCK_SIZE
    d = conf.roundup_power2_divisions
    if d > 1 and size > K_MIN_BLOCK_SIZE * d:
        if size & (size - 1) == 0:
            return size
        floor = 1 << (size.bit_length() - 1)
        step = floor // d
        if step == 0:
            return floor << 1
        low = size & ~(step - 1)
        return size if low == size else low + step
    return -(-size // K_MIN_BLOCK_SIZE) * K_MIN_BLOCK_SIZE


def allocation_size(size: int) -> int:
    """get_allocation_size(): the segment cudaMalloc'd for a request no cached block can take."""
    if size <= K_SMALL_SIZE:
        return K_SMALL_BUFFER
    if size < K_MIN_LARGE_ALLOC:
        return K_LARGE_BUFFER
    return -(-size // K_ROUND_LARGE) * K_ROUND_LARGE


@dataclass(frozen=True)
class Replay:
    peak_allocated_bytes: int   # the largest sum of live (rounded) requests
    peak_reserved_bytes: int    # the largest sum of segments


def replay(events: tuple, conf: AllocConf = AllocConf()) -> Replay:
    """Replay ``events``: ("+", id, bytes) allocates, ("-", id) frees. Blocks live in segments as
    [start, size, free] runs of address space; a request takes the smallest free block that fits
    (get_free_block), splits it when should_split allows, else a new segment; frees merge with free
    neighbours (try_merge_blocks)."""
    if conf == AllocConf():
        return _replay_default(events)
    sim = _Pool(conf)
    for ev in events:
        if ev[0] == "+":
            size = round_size(ev[2], conf)
            if size > K_SMALL_SIZE:          # the small pool's 2 MiB segments are not replayed
                sim.malloc(ev[1], size)
        else:
            sim.free(ev[1])
    return Replay(sim.peak_allocated, sim.peak_reserved)


def _replay_default(events: tuple) -> Replay:
    """The same replay as _Pool's under torch's default settings, in one loop (the searches replay every
    candidate; tests/test_caching_allocator.py holds the two to the same answers)."""
    free_set: list = []          # sorted (size, start) of free blocks
    size_of: dict = {}           # block start -> size
    prev_of: dict = {}           # block start -> previous block's start in its segment, or None
    free: set = set()
    live: dict = {}
    next_addr = allocated = reserved = peak_alloc = peak_res = 0
    for ev in events:
        if ev[0] == "+":
            size = -(-ev[2] // K_MIN_BLOCK_SIZE) * K_MIN_BLOCK_SIZE
            if size <= K_SMALL_SIZE:
                continue
            i = bisect_left(free_set, (size, -1))
            if i < len(free_set):
                bsize, start = free_set.pop(i)
                free.discard(start)
            else:
                bsize = allocation_size(size)
                start = next_addr
                next_addr += bsize + K_LARGE_BUFFER
                size_of[start], prev_of[start] = bsize, None
                reserved += bsize
                if reserved > peak_res:
                    peak_res = reserved
            if bsize - size > K_SMALL_SIZE:
                rest = start + size
                size_of[start] = size
                size_of[rest], prev_of[rest] = bsize - size, start
                after = start + bsize
                if prev_of.get(after, -1) == start:
                    prev_of[after] = rest
                free.add(rest)
                insort(free_set, (bsize - size, rest))
            else:
                size = bsize
            live[ev[1]] = start
            allocated += size
            if allocated > peak_alloc:
                peak_alloc = allocated
            continue
        start = live.pop(ev[1], None)
        if start is None:
            continue
        size = size_of[start]
        allocated -= size
        nxt = start + size
        if nxt in free and prev_of.get(nxt) == start:
            nsize = size_of.pop(nxt)
            free_set.pop(bisect_left(free_set, (nsize, nxt)))
            free.discard(nxt)
            del prev_of[nxt]
            size += nsize
            if prev_of.get(start + size, -1) == nxt:
                prev_of[start + size] = start
        before = prev_of[start]
        if before is not None and before in free:
            bsize = size_of[before]
            free_set.pop(bisect_left(free_set, (bsize, before)))
            del size_of[start], prev_of[start]
            size += bsize
            if prev_of.get(before + size, -1) == start:
                prev_of[before + size] = before
            start = before
        else:
            free.add(start)
        size_of[start] = size
        insort(free_set, (size, start))
    return Replay(peak_alloc, peak_res)


class _Pool:
    """The large pool of one stream (all the step's tensors are on the default stream). Blocks are
    address ranges; ``size`` and ``prev`` link each to its neighbours within its segment as Block's
    prev/next pointers do (the next block starts where a block ends)."""

    def __init__(self, conf: AllocConf):
        self.conf = conf
        self.free_set: list = []      # sorted (size, start) of free blocks: best fit by bisect
        self.size: dict = {}          # block start -> size
        self.prev: dict = {}          # block start -> the start of the block before it in its segment (or None)
        self.free_blocks: set = set()  # starts of free blocks
        self.live: dict = {}          # tensor id -> start
        self.next_addr = 0
        self.tail = None              # expandable segments: the last block of the one segment
        self.allocated = self.reserved = self.peak_allocated = self.peak_reserved = 0

    def malloc(self, tid, size: int) -> None:
        start = self._find(size)
        if start is None:
            start = self._new_segment(size)
        bsize = self.size[start]
        if self._should_split(bsize, size):
            rest = start + size
            self.size[start] = size
            self.size[rest], self.prev[rest] = bsize - size, start
            after = start + bsize
            if after in self.prev and self.prev[after] == start:
                self.prev[after] = rest
            if self.tail == start:
                self.tail = rest
            self._add_free(rest)
        else:
            size = bsize
        self.live[tid] = start
        self.allocated += size
        if self.allocated > self.peak_allocated:
            self.peak_allocated = self.allocated

    def free(self, tid) -> None:
        start = self.live.pop(tid, None)
        if start is None:
            return
        size = self.size[start]
        self.allocated -= size
        # try_merge_blocks: with the next and the previous block of the same segment, when free.
        nxt = start + size
        if nxt in self.free_blocks and self.prev.get(nxt) == start:
            self._remove_free(nxt)
            size += self.size.pop(nxt)
            self.prev.pop(nxt)
            if self.tail == nxt:
                self.tail = start
            after = start + size
            if self.prev.get(after) == nxt:
                self.prev[after] = start
        before = self.prev.get(start)
        if before is not None and before in self.free_blocks:
            self._remove_free(before)
            size += self.size[before]
            del self.size[start], self.prev[start]
            after = before + size
            if self.prev.get(after) == start:
                self.prev[after] = before
            if self.tail == start:
                self.tail = before
            start = before
        self.size[start] = size
        self._add_free(start)

    def _find(self, size: int):
        i = bisect_left(self.free_set, (size, -1))
        if i == len(self.free_set):
            return None
        bsize, start = self.free_set[i]
        limit = self.conf.max_split_bytes
        if limit is not None and not self.conf.expandable_segments:
            if size < limit <= bsize:                   # an oversize block never serves a smaller request
                return None
            if size >= limit and bsize >= size + K_LARGE_BUFFER:
                return None
        self.free_set.pop(i)
        self.free_blocks.discard(start)
        return start

    def _should_split(self, block: int, size: int) -> bool:
        remaining = block - size
        if self.conf.expandable_segments:
            return remaining >= K_MIN_BLOCK_SIZE
        limit = self.conf.max_split_bytes
        return (limit is None or size < limit) and remaining > K_SMALL_SIZE

    def _new_segment(self, size: int) -> int:
        if self.conf.expandable_segments:
            return self._expand(size)
        seg_size = allocation_size(size)
        start = self.next_addr
        self.next_addr += seg_size + K_LARGE_BUFFER     # segments are never adjacent: no merge across them
        self.size[start], self.prev[start] = seg_size, None
        self._grow(seg_size)
        return start

    def _expand(self, size: int) -> int:
        """One segment per stream that maps 20 MiB pages at its end; a free block at its end grows."""
        tail = self.tail
        if tail is not None and tail in self.free_blocks:
            have = self.size[tail]
            self._remove_free(tail)
            start = tail
        else:
            have, start = 0, self.next_addr
            self.prev[start] = tail
        pages = -(-(size - have) // EXPANDABLE_LARGE_PAGE) * EXPANDABLE_LARGE_PAGE
        self.size[start] = have + pages
        self.next_addr += pages
        self.tail = start
        self._grow(pages)
        return start

    def _grow(self, nbytes: int) -> None:
        self.reserved += nbytes
        if self.reserved > self.peak_reserved:
            self.peak_reserved = self.reserved

    def _add_free(self, start: int) -> None:
        self.free_blocks.add(start)
        insort(self.free_set, (self.size[start], start))

    def _remove_free(self, start: int) -> None:
        key = (self.size[start], start)
        i = bisect_left(self.free_set, key)
        if i < len(self.free_set) and self.free_set[i] == key:
            self.free_set.pop(i)
        self.free_blocks.discard(start)
