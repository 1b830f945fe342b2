"""Replay the regenerated inference traces of the 11 calibration records with pycore's caching-allocator
replay and compare with the measured reserve and with pycore's current estimate.

  python3 scripts/research/inference_reserve/run_table.py
"""
import json
import sys
import time

HERE = __import__("pathlib").Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))
import infer_trace as IT                                   # noqa: E402
from pycore.training.caching import replay                 # noqa: E402

GiB = 1 << 30
import os
SDPA = os.environ.get("SDPA", "cudnn")   # cudnn | flash | cpu (the CPU trace as captured)
CAL = str(HERE.parents[3] / "shared" / "calibration" / "h100-hf-transformers.jsonl")
T = str(HERE / "templates") + "/"


def dims_of(rec):
    c, w = rec["hf_config"], rec["workload"]
    mt = c["model_type"]
    d = dict(B=w["batch_size"], S=w["seq_len"], E=1, K=1, NPOS=c.get("n_positions") or c.get("max_position_embeddings"))
    if mt == "gpt2":
        hid = c["n_embd"]
        d.update(HID=hid, NH=c["n_head"], KVH=c["n_head"], HD=hid // c["n_head"], INTER=c.get("n_inner") or 4 * hid,
                 V=c["vocab_size"])
        L = c["n_layer"]
    else:
        hid, nh = c["hidden_size"], c["num_attention_heads"]
        d.update(HID=hid, NH=nh, KVH=c.get("num_key_value_heads") or nh, HD=c.get("head_dim") or hid // nh,
                 INTER=c["intermediate_size"], V=c["vocab_size"])
        if mt == "olmoe":
            d.update(E=c["num_experts"], K=c["num_experts_per_tok"])
        L = c["num_hidden_layers"]
    return d, L


def template_of(rec):
    c, w = rec["hf_config"], rec["workload"]
    mt = c["model_type"]
    dt = w["weights_dtype"]
    arch = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2", "olmoe": "olmoe", "gpt2": "gpt2",
            "bert": "bert"}[mt]
    g = "g4" if w["new_tokens"] else "g0"
    tdt = {"llama": {"sdpa": "bf16", "eager": "fp16"}, "bert": {"sdpa": "fp16"}, "gpt2": {"sdpa": "fp32"}}.get(
        arch, {"sdpa": "bf16"})[w["attention"]]
    assert tdt == dt or (dt in ("bf16", "fp16") and tdt in ("bf16", "fp16")), (rec["id"], dt, tdt)
    return IT.load(f"{T}{arch}_{w['attention']}_{tdt}_L3_{g}.json"), dt


def current_estimates():
    from pycore.api import estimate_dict
    from pycore.check.record import request_from_record
    out = {}
    for line in open(CAL):
        rec = json.loads(line)
        if rec["workload"]["mode"] != "inference":
            continue
        r = estimate_dict(request_from_record(rec))
        out[rec["id"]] = r["result"]
    return out


def main():
    recs = [json.loads(l) for l in open(CAL)]
    recs = [r for r in recs if r["workload"]["mode"] == "inference"]
    try:
        cur = current_estimates()
    except Exception as e:   # noqa: BLE001
        print("current estimate failed:", repr(e)[:300])
        cur = {}
    rows = []
    for rec in recs:
        t, dt = template_of(rec)
        d, L = dims_of(rec)
        N = rec["workload"]["new_tokens"]
        t0 = time.perf_counter()
        ev = IT.cuda_events(t, d, L, N, dt, SDPA) if SDPA != "cpu" else IT.events(t, d, L, N)
        t1 = time.perf_counter()
        big = tuple(e for e in ev if e[0] == "-" or e[2] > (1 << 20))
        t2 = time.perf_counter()
        r = replay(big)
        t3 = time.perf_counter()
        m = rec["measured"]
        res = cur.get(rec["id"], {})
        est_over = (res.get("reserved_bytes", 0) - res.get("peak_allocated_bytes", 0)) if res else None
        rows.append(dict(id=rec["id"], N=N, events=len(ev), big=len(big),
                         meas_alloc=m["peak_allocated_bytes"], meas_res=m["peak_reserved_bytes"], w=m["weights_bytes"],
                         rep_alloc=r.peak_allocated_bytes, rep_res=r.peak_reserved_bytes,
                         est_res=res.get("reserved_bytes"), est_alloc=res.get("peak_allocated_bytes"),
                         est_over=est_over,
                         t_gen=(t1 - t0) * 1e3, t_filter=(t2 - t1) * 1e3, t_replay=(t3 - t2) * 1e3))
    json.dump(rows, open(HERE / f"table_{SDPA}.json", "w"), indent=1)
    print("SDPA variant:", SDPA)
    g = lambda x: f"{x / GiB:6.2f}" if x is not None else "   -  "
    print(f"{'id':40s} {'meas_over':>9s} {'replay_ov':>9s} {'share_ov':>9s} | {'meas_res':>8s} {'rep+w':>8s} | "
          f"{'meas_al':>8s} {'rep_al+w':>8s} | ev/big  gen+filt+replay ms")
    for x in rows:
        mo = x["meas_res"] - x["meas_alloc"]
        ro = x["rep_res"] - x["rep_alloc"]
        print(f"{x['id']:40s} {g(mo):>9s} {g(ro):>9s} {g(x['est_over']):>9s} | {g(x['meas_res']):>8s} "
              f"{g(x['rep_res'] + x['w']):>8s} | {g(x['meas_alloc']):>8s} {g(x['rep_alloc'] + x['w']):>8s} | "
              f"{x['events']}/{x['big']} {x['t_gen']:.0f}+{x['t_filter']:.0f}+{x['t_replay']:.0f}")


if __name__ == "__main__":
    main()
