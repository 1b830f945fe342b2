"""Regenerate the allocation/free sequence of an HF transformers inference run (generate with DynamicCache,
or one plain forward) for real dims, from a symbolic template captured on a tiny model (symbolize.py).

Pure Python, stdlib only. events(template, dims, layers, new_tokens) -> tuple of ("+", id, bytes) / ("-", id)
in program order, for pycore.training.caching.replay. dims: B, S (prompt), NH, KVH, HD, HID, INTER, V and,
for MoE, E, K; the template's sizes are products of those (and T = S + forward index, the kv length, Q = query
length: S at prefill, 1 at decode) times the dtype's bytes. Every tensor of the trace is emitted (replay
drops those of 1 MiB or less).

Template chunks: gap k (generate's bookkeeping, norm, lm_head, logits processing, embedding, rotary) between
forward k-1 and k; layer l of forward k. The tiny capture had 3 layers and 4 new tokens: layer 0, a middle
layer (1) and the last (2); forward 0 (prefill), 1 (first decode), 2 (a middle decode step) and 3 (the last).
"""
from __future__ import annotations

import json

_CODE: dict = {}


def _size(expr: str, env: dict) -> int:
    c = _CODE.get(expr)
    if c is None:
        c = _CODE[expr] = compile(expr, expr, "eval")
    return eval(c, {"__builtins__": {}}, env)


def load(path: str) -> dict:
    t = json.load(open(path))
    t["by"] = {(c["f"], c["slot"]): c["events"] for c in t["chunks"]}
    return t


def _tiny_forward(F: int, N: int, nt: int) -> int:
    """real forward (or gap) index F of N -> the tiny one of nt that stands for it."""
    if F <= 1 or nt <= 2:
        return min(F, nt - 1)
    if F == N - 1:
        return nt - 1
    return 2 if nt > 3 else nt - 1


def _freed_chunk(F: int, slot: int, ft: int, st: int, fo: int, so: int, layers: int, nl_t: int) -> tuple:
    """(forward, layer) of the real run whose allocation a template free refers to, from the template's
    (forward fo, layer so) relative to the chunk (ft, st) being emitted at real (F, slot); layer -1 is a
    gap; None: every middle layer (the middle tiny layer stands for all of them)."""
    Fo = 0 if fo == 0 else F - (ft - fo)
    if so == -1:
        return Fo, -1
    if st >= 0:
        return Fo, slot - (st - so)
    return Fo, (0 if so == 0 else (layers - 1 if so == nl_t - 1 else None))


def events(t: dict, dims: dict, layers: int, new_tokens: int, extra=None):
    """The event list for one run. extra(kind, F, env) may return additional events (CUDA-specific ones)."""
    nf_t, nl_t = t["forwards"], t["layers"]
    N = max(new_tokens, 1)                     # forwards: prefill + N-1 decode steps (1 for a plain forward)
    by = t["by"]
    out = []
    ids: dict = {}
    nid = 0
    env = dict(dims)

    def tl(l):
        return 0 if l == 0 else (nl_t - 1 if l == layers - 1 else 1)

    def emit(F, slot, ft, st):
        nonlocal nid
        mine = ids[(F, slot)] = []
        for e in by.get((ft, st), ()):
            if e[0] == "+":
                nid += 1
                mine.append(nid)
                out.append(("+", nid, e[1] * _size(e[2], env)))
            else:
                pos = e[3]
                Fo, So = _freed_chunk(F, slot, ft, st, e[1], e[2], layers, nl_t)
                try:
                    if So is None:
                        out.extend(("-", ids[(Fo, l)][pos]) for l in range(1, layers - 1))
                    else:
                        out.append(("-", ids[(Fo, So)][pos]))
                except (KeyError, IndexError, TypeError):
                    raise RuntimeError(f"unmapped free {e} in chunk {(ft, st)} at real {(F, slot)}")

    for F in range(N + 1):                    # gap F, then forward F's layers
        ft = _tiny_forward(F, N + 1, nf_t + 1)
        env["T"] = dims["S"] + (0 if t.get("plain") else F)
        env["Q"] = dims["S"] if F == 0 or t.get("plain") else 1
        emit(F, -1, ft, -1)
        if extra:
            out.extend(extra("gap", F, env))
        if F == N:
            break
        ft = _tiny_forward(F, N, nf_t)
        for l in range(layers):
            emit(F, l, ft, tl(l))
    return tuple(out)


# ---- what differs on CUDA (torch 2.11, H100) from the CPU capture -------------------------------------
CUBLAS_WORKSPACE = 32 << 20   # cuBLAS workspace on sm90 (CublasHandlePool: 4096 KiB x 8), taken from the
                              # caching allocator at the first matmul and kept


def cuda_adjust(t: dict, dtype: str, sdpa: str = "cudnn") -> dict:
    """A copy of template t with the CPU-only tensors set to 0 bytes:
    - the CPU flash kernel's second output is a (B, NH, Q) fp32 logsumexp: CUDA's flash kernel has it too,
      cuDNN attention (torch prefers it on sm90 with cuDNN > 9.15) and the memory-efficient kernel (fp32,
      GPT-2) return none when no grad is needed;
    - fp16 eager softmax(dtype=float32) is one _softmax(half_to_float=True) on CUDA: no fp32 copy of the
      scores before it (bf16 still converts first)."""
    by = {}
    for key, evs in t["by"].items():
        new = []
        for i, e in enumerate(evs):
            if e[0] == "+":
                op = e[3]
                if op.startswith("_scaled_dot_product"):
                    # The output: q is rope's output, which TensorIterator lays out like q_proj's (B, S, NH, HD)
                    # memory; cuDNN (empty_like(q)), flash (empty_like of q.transpose(1, 2)) and the
                    # memory-efficient kernel (empty(B, S, NH, HD)) all give a (B, S, NH, HD) buffer, so HF's
                    # transpose(1, 2).contiguous() copies nothing, as on CPU. The logsumexp (B, NH, Q) fp32:
                    # flash returns one always, cuDNN and memory-efficient (fp32) none without grad.
                    if "HD" not in e[2] and (dtype == "fp32" or sdpa == "cudnn"):
                        e = ["+", e[1], "0", op, e[4]]
                if dtype == "fp16" and op == "_to_copy" and e[1] == 4:
                    nxt = next((x for x in evs[i + 1:] if x[0] == "+"), None)
                    if nxt is not None and nxt[3] == "_softmax":
                        e = ["+", e[1], "0", op, e[4]]
            new.append(e)
        by[key] = new
    return dict(t, by=by)


def cuda_events(t: dict, dims: dict, layers: int, new_tokens: int, dtype: str, sdpa: str = "cudnn"):
    return (("+", 0, CUBLAS_WORKSPACE),) + events(cuda_adjust(t, dtype, sdpa), dims, layers, new_tokens)


# ---- the weights, allocated before the run in the same large pool -----------------------------------
def weight_events(wt: list, dims: dict, layers: int, start_id: int = -1):
    """("+", id, bytes) for each parameter/buffer of the symbolic list wt (weights_template.py: tiny model,
    layer 0 standing for every layer), in construction order; ids count down from start_id."""
    import re
    lay = re.compile(r"\.(layers|h|layer)\.(\d+)\.")
    env = dict(dims)
    out, nid = [], start_id
    i = 0
    while i < len(wt):
        m = lay.search(wt[i][2])
        if not m:
            out.append(("+", nid, wt[i][0] * _size(wt[i][1], env))); nid -= 1; i += 1
            continue
        block = []
        while i < len(wt) and (mm := lay.search(wt[i][2])):
            if mm.group(2) == "0":
                block.append(wt[i])
            i += 1
        for _ in range(layers):
            for w in block:
                out.append(("+", nid, w[0] * _size(w[1], env))); nid -= 1
    return tuple(out)


# ---- fast path: only the tensors the replay keeps (> min_bytes) ----------------------------------------
def events_big(t: dict, dims: dict, layers: int, new_tokens: int, min_bytes: int = 1 << 20, stride: int = 1):
    """events() without the tensors of min_bytes or less (replay ignores them) and without their frees.
    A template allocation is dropped when it is small at both the shortest and the longest kv length of the
    run (sizes grow with T); the tiny chunk a free points into decides whether that free is dropped."""
    nf_t, nl_t = t["forwards"], t["layers"]
    N = max(new_tokens, 1)
    plain = t.get("plain")
    env_lo = dict(dims, T=dims["S"])
    env_hi = dict(dims, T=dims["S"] + (0 if plain else N + 1))
    small = {}                                   # (f, slot) -> set of dropped positions
    for key, evs in t["by"].items():
        q = dims["S"] if key[0] == 0 or plain else 1
        env_lo["Q"] = env_hi["Q"] = q
        drop, pos = set(), 0
        for e in evs:
            if e[0] == "+":
                if e[1] * _size(e[2], env_lo) <= min_bytes and e[1] * _size(e[2], env_hi) <= min_bytes:
                    drop.add(pos)
                pos += 1
        small[key] = drop
    fast = {}                                    # filtered chunks: ("+", pos, itemsize, code) / ("-", fo, so, pos)
    for key, evs in t["by"].items():
        out, pos = [], 0
        for e in evs:
            if e[0] == "+":
                if pos not in small[key]:
                    c = _CODE.get(e[2]) or _CODE.setdefault(e[2], compile(e[2], e[2], "eval"))
                    out.append(("+", pos, e[1], c))
                pos += 1
            elif e[3] not in small.get((e[1], e[2]), ()):
                out.append(e)
        fast[key] = out
    out = []
    ids: dict = {}
    nid = 0
    env = dict(dims)
    g = {"__builtins__": {}}

    def tl(l):
        return 0 if l == 0 else (nl_t - 1 if l == layers - 1 else 1)

    def emit(F, slot, ft, st):
        nonlocal nid
        mine = ids[(F, slot)] = {}
        for e in fast.get((ft, st), ()):
            if e[0] == "+":
                nid += 1
                mine[e[1]] = nid
                out.append(("+", nid, e[2] * eval(e[3], g, env)))
            else:
                pos = e[3]
                Fo, So = _freed_chunk(F, slot, ft, st, e[1], e[2], layers, nl_t)
                if So is None:
                    for l in range(1, layers - 1):
                        i = ids[(Fo, l)].get(pos)
                        if i is not None:
                            out.append(("-", i))
                else:
                    i = ids[(Fo, So)].get(pos)
                    if i is not None:
                        out.append(("-", i))

    # stride > 1: an approximation that replays every stride-th decode step only (the kv length jumps by
    # stride tokens between replayed steps); forwards are renumbered 0..M so the template roles still apply
    M = N if stride <= 1 else 1 + -(-(N - 1) // stride)
    for F in range(M + 1):
        ft = _tiny_forward(F, M + 1, nf_t + 1)
        tok = F if stride <= 1 or F == 0 else min(N, 1 + (F - 1) * stride)
        env["T"] = dims["S"] + (0 if plain else tok)
        env["Q"] = dims["S"] if F == 0 or plain else 1
        emit(F, -1, ft, -1)
        if F == M:
            break
        ft = _tiny_forward(F, M, nf_t)
        for l in range(layers):
            emit(F, l, ft, tl(l))
    return tuple(out)


def cuda_events_big(t: dict, dims: dict, layers: int, new_tokens: int, dtype: str, sdpa: str = "cudnn"):
    return (("+", 0, CUBLAS_WORKSPACE),) + events_big(cuda_adjust(t, dtype, sdpa), dims, layers, new_tokens)
