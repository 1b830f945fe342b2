"""The table of the report: measured vs current share model vs replay variants, for the 11 inference records.
  python3 scripts/research/inference_reserve/final_table.py > scripts/research/inference_reserve/results.md
A: the brief's setup: no weights in the pool, pycore replay as is (segments at ascending addresses).
B: weights allocated first in the same pool (construction order), ascending addresses.
C: as B, each new segment placed below the previous ones (descending cudaMalloc addresses).
All: CUDA-adjusted trace (cuDNN SDPA: no logsumexp; fp16 eager softmax without fp32 copy; 32 MiB cuBLAS
workspace), full decode, tensors <= 1 MiB dropped (small pool not replayed)."""
import sys, json, time
HERE = __import__("pathlib").Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2])); sys.path.insert(0, str(HERE))
import infer_trace as IT, run_table as RT
from addr_sensitivity import pool
from pycore.training.caching import replay
MiB = 1 << 20; GiB = 1 << 30


cur = RT.current_estimates()
g = lambda x: f"{x / GiB:6.2f}"
print("| run | measured ovh | share model ovh | A: replay ovh | B: +weights | C: +weights, desc. addr | measured reserved | C reserved | measured alloc | C alloc |")
print("|---|---|---|---|---|---|---|---|---|---|")
errs = {k: [] for k in ("share", "A", "B", "C")}
for line in open(RT.CAL):
    rec = json.loads(line)
    if rec["workload"]["mode"] != "inference": continue
    t, dt = RT.template_of(rec); d, L = RT.dims_of(rec); N = rec["workload"]["new_tokens"]
    mt = rec["hf_config"]["model_type"]
    wt = json.load(open(f"{RT.T}weights_{mt}_{'fp16' if (mt == 'llama' and dt == 'fp16') else {'gpt2': 'fp32', 'bert': 'fp16'}.get(mt, 'bf16')}.json"))
    if rec["hf_config"].get("tie_word_embeddings") and mt in ("llama", "qwen2", "mistral", "olmoe"):
        wt = [w for w in wt if not w[2].startswith("lm_head")]
    W = tuple(e for e in IT.weight_events(wt, d, L) if e[2] > MiB)
    ev = IT.cuda_events_big(t, d, L, N, dt)
    rA = replay(ev)
    aB, resB = pool(W + ev, "up")
    aC, resC = pool(W + ev, "down")
    m = rec["measured"]
    mo = m["peak_reserved_bytes"] - m["peak_allocated_bytes"]
    r = cur[rec["id"]]
    so = r["reserved_bytes"] - r["peak_allocated_bytes"]
    vals = dict(share=so, A=rA.peak_reserved_bytes - rA.peak_allocated_bytes, B=resB - aB, C=resC - aC)
    for k, v in vals.items():
        errs[k].append(abs(v - mo))
    print(f"| {rec['id']} | {g(mo)} | {g(so)} | {g(vals['A'])} | {g(vals['B'])} | {g(vals['C'])} | {g(m['peak_reserved_bytes'])} | "
          f"{g(resC)} | {g(m['peak_allocated_bytes'])} | {g(aC)} |", flush=True)
print()
print("mean abs error of the overhead, GiB: " + ", ".join(f"{k} {sum(v) / len(v) / GiB:.2f}" for k, v in errs.items()))
print("runs within 0.35 GiB: " + ", ".join(f"{k} {sum(1 for x in v if x <= 0.35 * GiB)}/11" for k, v in errs.items()))
