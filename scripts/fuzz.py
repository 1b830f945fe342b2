"""A longer run of the every-kind fuzz (tests/fuzz_kinds.py): requests of every kind with fields drawn
from the schema within its limits. Prints, per kind, how many were answered "ok" and refused, the
slowest request's CPU time, and every internal error or request over the limit; exits 1 on any.

    python scripts/fuzz.py [--count 5000] [--seed 1] [--limit-s 1.0]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

from fuzz_kinds import KINDS, answer, internal_errors, requests_of_every_kind, warm  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--limit-s", type=float, default=1.0)
    a = ap.parse_args()
    warm()
    stats = {k: {"ok": 0, "error": 0, "slowest_s": 0.0} for k in KINDS}
    slowest: dict = {}
    problems: list = []

    @seed(a.seed)
    @settings(max_examples=a.count, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=requests_of_every_kind())
    def run(case):
        kind, req = case
        resp, seconds = answer(kind, req)
        s = stats[kind]
        s[resp["status"] if resp["status"] in ("ok", "error") else "error"] += 1
        if seconds > s["slowest_s"]:
            s["slowest_s"] = seconds
            slowest[kind] = req
        bad = internal_errors(resp)
        if bad or seconds >= a.limit_s:
            problems.append({"kind": kind, "seconds": round(seconds, 3), "errors": bad, "request": req})

    run()
    print(f"{'kind':16} {'ok':>6} {'refused':>8} {'slowest CPU s':>14}")
    for kind, s in stats.items():
        print(f"{kind:16} {s['ok']:6} {s['error']:8} {s['slowest_s']:14.3f}")
    for kind, req in slowest.items():
        if stats[kind]["slowest_s"] >= a.limit_s / 2:
            print(f"slowest {kind} ({stats[kind]['slowest_s']:.3f} s): {json.dumps(req)[:400]}")
    for p in problems[:20]:
        print(json.dumps(p)[:600])
    total = sum(s["ok"] + s["error"] for s in stats.values())
    print(f"fuzz: {total} requests, {len(problems)} over {a.limit_s} s of CPU or with an internal error; "
          f"slowest {max(s['slowest_s'] for s in stats.values()):.3f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
