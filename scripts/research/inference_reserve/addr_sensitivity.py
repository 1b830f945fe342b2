"""Sensitivity to where cudaMalloc places segments: the allocator breaks best-fit ties between equal-size free
blocks by address, and cudaMalloc's address order is the driver's. Replays with segment bases in increasing
order (pycore), decreasing order, and 4 random orders; weights first in the pool."""
import sys, json, random, os
HERE = __import__("pathlib").Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2])); sys.path.insert(0, str(HERE))
import infer_trace as IT, run_table as RT
from pycore.training import caching as C
GiB = 1 << 30; MiB = 1 << 20


class P(C._Pool):
    def __init__(self, mode, seed=0):
        super().__init__(C.AllocConf())
        self.mode, self.rnd, self.k = mode, random.Random(seed), 0

    def _new_segment(self, size):
        seg = C.allocation_size(size)
        self.k += 1
        span = 1 << 62
        if self.mode == "up":
            start = self.k << 40
        elif self.mode == "down":
            start = span - (self.k << 40)
        else:
            start = self.rnd.randrange(1, 1 << 20) << 40   # distinct, far apart: never adjacent
        self.size[start], self.prev[start] = seg, None
        self._grow(seg)
        return start


def pool(ev, mode, seed=0):
    """(peak allocated, peak reserved) of the events replayed with segments placed in ``mode`` order."""
    p = P(mode, seed)
    for e in ev:
        if e[0] == "+":
            s = C.round_size(e[2])
            if s > C.K_SMALL_SIZE: p.malloc(e[1], s)
        else:
            p.free(e[1])
    return p.peak_allocated, p.peak_reserved


def run(ev, mode, seed=0):
    allocated, reserved = pool(ev, mode, seed)
    return (reserved - allocated) / GiB


def main():
    ids = sys.argv[1].split(",") if len(sys.argv) > 1 else None
    print(f"{'id':42s} {'meas':>6s} {'up':>6s} {'down':>6s}  random x4")
    for line in open(RT.CAL):
        rec = json.loads(line)
        if rec["workload"]["mode"] != "inference" or (ids and rec["id"] not in ids): continue
        t, dt = RT.template_of(rec); d, L = RT.dims_of(rec); N = rec["workload"]["new_tokens"]
        mt = rec["hf_config"]["model_type"]
        wt = json.load(open(f"{RT.T}weights_{mt}_{'fp16' if (mt == 'llama' and dt == 'fp16') else {'gpt2': 'fp32', 'bert': 'fp16'}.get(mt, 'bf16')}.json"))
        if rec["hf_config"].get("tie_word_embeddings") and mt in ("llama", "qwen2", "mistral", "olmoe"):
            wt = [w for w in wt if not w[2].startswith("lm_head")]
        ev = tuple(e for e in IT.weight_events(wt, d, L) + IT.cuda_events(t, d, L, N, dt) if e[0] == "-" or e[2] > MiB)
        m = rec["measured"]
        vals = [run(ev, "up"), run(ev, "down")] + [run(ev, "rand", s) for s in range(4)]
        print(f"{rec['id']:42s} {(m['peak_reserved_bytes'] - m['peak_allocated_bytes']) / GiB:6.2f} " + " ".join(f"{x:6.2f}" for x in vals), flush=True)


if __name__ == "__main__":
    main()
