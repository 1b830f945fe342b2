"""Every request kind, with fields drawn from the schema within its limits, gets a structured answer in
under a second of CPU: no internal error, no unbounded search (issue 18). A fixed seed and a bounded
count keep this under a minute; `python scripts/fuzz.py --count N` runs the same generator longer."""

from hypothesis import HealthCheck, Phase, given, seed, settings

from fuzz_kinds import answer, internal_errors, requests_of_every_kind, warm

warm()
CPU_LIMIT_S = 1.0


@seed(18)
# no shrinking: a failing example is reported as drawn (shrinking a slow one would take minutes)
@settings(max_examples=250, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=requests_of_every_kind())
def test_every_kind_of_request_is_answered_in_under_a_second_without_an_internal_error(case):
    kind, req = case
    resp, seconds = answer(kind, req)
    assert resp["status"] in ("ok", "error"), resp
    assert not internal_errors(resp), (kind, resp["errors"], req)
    assert seconds < CPU_LIMIT_S, f"{kind}: {seconds:.2f} s of CPU for {req}"


def test_the_generator_reaches_every_kind_and_answers():
    # the strategy draws each kind; a request of each kind on a small model is answered "ok", so the
    # fuzz above is not made only of refusals
    from fuzz_kinds import KINDS
    seen = {}
    for kind in KINDS:
        req = {"model": "llama-3.2-1b", "workload": {"mode": "lora", "seq_len": 512}}
        if kind.startswith("serve-"):
            req["workload"] = {"mode": "serve", "engine": kind.split("-", 1)[1]}
        elif kind in ("plan", "fit"):
            req[kind] = {}
            if kind == "fit":
                req["gpu"] = "t4-16gb"
                req["workload"] = {"mode": "full", "seq_len": 4096, "batch_size": 8}
        elif kind == "sweep":
            req["sweep"] = {"field": "batch_size"}
        elif kind == "check":
            req["measured"] = {"text": "max_memory_allocated: 21.3 GiB"}
        seen[kind] = answer(kind, req)[0]["status"]
    assert seen == {kind: "ok" for kind in KINDS}, seen
