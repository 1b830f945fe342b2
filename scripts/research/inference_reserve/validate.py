"""Validate the unroller: the template from the L=3, 4-token capture, expanded for L=4 and 6 tokens with the
tiny dims, must reproduce the L=4, 6-token capture event for event (sizes and which allocation each free frees)."""
import sys
import infer_trace as IT
import symbolize as SY


def canon(evs):
    idx, out = {}, []
    for e in evs:
        if e[0] == "+":
            idx[e[1]] = len(idx)
            out.append(("+", e[2]))
        elif e[1] in idx:
            out.append(("-", idx[e[1]]))
    return out


def check(name, L, N):
    arch = name.split("_")[0]
    t = IT.load(f"templates/{name}_L3_g{4 if N else 0}.json")
    d = dict(SY.BASE, **SY.ARCH[arch])
    gen = IT.events(t, d, L, N)
    cap = [e if e[0] == "-" else ("+", e[1], e[2]) for e in SY.parse(f"traces/{name}_L{L}_g{N}.txt")]
    a, b = canon(gen), canon(cap)
    # frees within one poll come in arbitrary order: compare each run of frees as a set
    def runs(x):
        r, cur = [], []
        for e in x:
            if e[0] == "-":
                cur.append(e[1])
            else:
                r.append(tuple(sorted(cur))); cur = []; r.append(e)
        r.append(tuple(sorted(cur)))
        return r
    ra, rb = runs(a), runs(b)
    ok = ra == rb
    if not ok:
        for i, (x, y) in enumerate(zip(ra, rb)):
            if x != y:
                print(name, "first diff at", i, x, y); break
        print(name, len(ra), len(rb))
    print(f"{name} L={L} N={N}: {'MATCH' if ok else 'DIFFER'} ({len(a)} events)")


for name in ["llama_sdpa_bf16", "llama_eager_fp16", "qwen2_sdpa_bf16", "mistral_sdpa_bf16", "olmoe_sdpa_bf16", "gpt2_sdpa_fp32"]:
    check(name, 4, 6)
for name in ["llama_sdpa_bf16", "bert_sdpa_fp16"]:
    check(name, 4, 0)
