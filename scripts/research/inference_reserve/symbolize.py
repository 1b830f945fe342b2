"""Turn a tiny captured trace (capture.py) into a symbolic template (JSON) for infer_trace.py.

Each allocation's shape entries are mapped to symbols by value (the tiny dims are chosen so that every
value that occurs is unique); the trace is cut into chunks: gap f (between forward f-1 and forward f:
norm, lm_head, generate's bookkeeping, embedding, rotary) and layer l of forward f. Frees refer to the
allocation they free by (forward delta, layer, position in its chunk).

usage: python3 symbolize.py TRACE ARCH > template.json
"""
import json
import re
import sys

ITEM = {"bfloat16": 2, "float16": 2, "float32": 4, "int64": 8, "int32": 4, "bool": 1, "uint8": 1, "float64": 8}
LAYER_RE = re.compile(r"\.(layers|h|layer)\.(\d+)(\.|$)")

# tiny dims of capture.py, per arch
BASE = dict(B=3, S=23, NH=4, KVH=2, HD=10, HID=52, INTER=37, V=97, E=8, K=6)
ARCH = {
    "llama": {}, "mistral": {},
    "qwen2": dict(HID=40),
    "olmoe": dict(HID=40, KVH=4, INTER=48),
    "gpt2": dict(HID=36, HD=9, KVH=4, INTER=144),
    "bert": dict(HID=36, HD=9, KVH=4),
}


def table(arch, f, decode):
    d = dict(BASE, **ARCH[arch])
    T = d["S"] + f               # kv length in forward f (prompt + generated so far)
    Q = 1 if decode else d["S"]  # query length
    vals = {}

    def put(v, sym):
        if v in vals and vals[v] != sym:
            # keep the first (listed most specific first)
            return
        vals[v] = sym
    put(1, "1")
    put(T, "T")
    put(T + 1, "(T+1)")
    if f:
        put(d["S"], "S")
    for k in ("B", "NH", "HD", "HID", "INTER", "V", "KVH", "E", "K"):
        put(d[k], k)
    put(d["HD"] // 2, "(HD//2)")
    put(d["B"] * Q, "B*Q")
    put(d["B"] * Q * d["K"], "B*Q*K")
    put(d["B"] * d["NH"], "B*NH")
    put(d["B"] * d["KVH"], "B*KVH")
    put(d["NH"] * d["HD"], "NH*HD")
    put(d["KVH"] * d["HD"], "KVH*HD")
    put(2 * d["INTER"], "2*INTER")
    put(3 * d["HID"], "3*HID")
    put(4 * d["HID"], "4*HID")
    put(64, "NPOS")      # gpt2 n_positions / bert max_position_embeddings (tiny)
    return vals


def parse(path):
    ev = []
    for line in open(path):
        p = line.split()
        if not p:
            continue
        if p[0] == "+":
            ev.append(("+", int(p[1]), int(p[2]), p[3], tuple(int(x) for x in p[4].strip("()").split(",") if x),
                       p[5], p[6]))
        elif p[0] == "-":
            ev.append(("-", int(p[1])))
    return ev


def build(path, arch):
    ev = parse(path)
    # chunking
    chunks = []            # list of dict(f, slot, events)
    cur = None
    f = 0
    seen_layer = False
    where = {}             # tiny id -> (chunk index, position)
    for e in ev:
        if e[0] == "+":
            m = LAYER_RE.search(e[6])
            slot = int(m.group(2)) if m else -1
            if cur is None or slot != cur["slot"]:
                if slot == -1 and cur is not None and cur["slot"] == -1:
                    pass
                else:
                    if slot == 0 and cur is not None and cur["slot"] == -1 and seen_layer:
                        pass
                    if slot >= 0:
                        seen_layer = True
                    if slot == -1 and cur is not None and cur["slot"] >= 0:
                        f += 1
                    cur = dict(f=f, slot=slot, events=[], nalloc=0)
                    chunks.append(cur)
        if cur is None:
            cur = dict(f=0, slot=-1, events=[], nalloc=0)
            chunks.append(cur)
        if e[0] == "+":
            where[e[1]] = (len(chunks) - 1, cur["nalloc"])
            cur["nalloc"] += 1
        cur["events"].append(e)
    # forward numbering: layer chunks of forward k follow gap k; gaps counted by f above (gap k has f=k,
    # the layers after it belong to forward k)
    nfwd = max(c["f"] for c in chunks if c["slot"] >= 0) + 1
    nlayers = max(c["slot"] for c in chunks) + 1
    decode_of = lambda fk: fk > 0
    out = []
    for ci, c in enumerate(chunks):
        fk = c["f"]
        if nfwd == 1:     # a plain forward: the closing gap has the prompt's shapes
            tab = table(arch, 0, False)
        else:
            tab = table(arch, fk, decode_of(fk) if fk < nfwd else True)
        evs = []
        for e in c["events"]:
            if e[0] == "+":
                _, i, nb, dt, shape, op, mod = e
                syms = []
                for v in shape:
                    if v not in tab:
                        raise SystemExit(f"{path}: unknown dim {v} in {e} (f={fk})")
                    syms.append(tab[v])
                n = ITEM[dt]
                for v in shape:
                    n *= v
                if n != nb:
                    raise SystemExit(f"{path}: storage {nb} != shape bytes {n} in {e}")
                expr = "*".join(syms) or "1"
                # repeat_kv's (B, KVH, n_rep, T, HD): tiny n_rep == KVH == 2; the real factor is NH//KVH
                expr = expr.replace("KVH*KVH", "NH")
                evs.append(["+", ITEM[dt], expr, op, mod.split(".")[-1]])
            else:
                if e[1] not in where:
                    continue   # allocated outside the capture
                oc, pos = where[e[1]]
                o = chunks[oc]
                evs.append(["-", o["f"], o["slot"], pos])
        out.append(dict(f=fk, slot=c["slot"], events=evs))
    return dict(arch=arch, source=path, plain=nfwd == 1, forwards=nfwd, layers=nlayers, chunks=out)


if __name__ == "__main__":
    print(json.dumps(build(sys.argv[1], sys.argv[2])))
