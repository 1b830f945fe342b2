"""Checking an estimate against the user's own run (issue 13): reading what PyTorch and nvidia-smi
print, comparing it term by term, naming the assumption behind a gap, and the calibration record.

Expected values are the measured runs of shared/calibration (independent of the core), and the
byte arithmetic of the printed units, done by hand below."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from pycore.api import estimate, estimate_dict
from pycore.check.parse import MAX_LINES, MAX_TEXT_CHARS, parse_measured, parse_measured_text
from pycore.check.record import calibration_record, record_from_flat, request_from_record
from pycore.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "calibration"
CAL = SHARED / "h100-hf-transformers.jsonl"
MiB, GiB = 2 ** 20, 2 ** 30


def records():
    if not CAL.exists():
        pytest.skip("shared calibration not present")
    return {r["id"]: r for r in map(json.loads, CAL.read_text().splitlines()) if r}


# torch/cuda/memory.py, memory_summary (torch 2.x): _format_size floors to the largest unit that
# leaves at least 768 of it; every line is framed in "|". Written out here so that the test builds
# the text the way torch does, independently of the parser.
def torch_format_size(sz, pref_sz):
    prefixes = ["B  ", "KiB", "MiB", "GiB", "TiB", "PiB"]
    prefix = prefixes[0]
    for new_prefix in prefixes[1:]:
        if pref_sz < 768 * 1024:
            break
        prefix = new_prefix
        sz //= 1024
        pref_sz /= 1024
    return f"{sz:6d} {prefix}"


def torch_summary(stats: dict, ooms: int = 0) -> str:
    lines = ["=" * 75, " {:16} PyTorch CUDA memory summary, device ID {:<17d} ".format("", 0), "-" * 75,
             "  {:9} CUDA OOMs: {:<12d} | {:6} cudaMalloc retries: {:<8d}  ".format("", ooms, "", 0), "=" * 75,
             "        Metric         | Cur Usage  | Peak Usage | Tot Alloc  | Tot Freed  "]
    for key, name in (("allocated_bytes", "Allocated memory"), ("active_bytes", "Active memory"),
                      ("requested_bytes", "Requested memory"), ("reserved_bytes", "GPU reserved memory"),
                      ("inactive_split_bytes", "Non-releasable memory")):
        lines.append("-" * 75)
        cur, peak = stats[key]
        for sub, label in (("all", name), ("large", "      from large pool"), ("small", "      from small pool")):
            c, p = (cur, peak) if sub == "all" else ((cur - 1024, peak - 1024) if sub == "large" else (1024, 1024))
            lines.append(f" {label:<21} | {torch_format_size(c, cur)} | {torch_format_size(p, peak)} | "
                         f"{torch_format_size(p * 9, p * 9)} | {torch_format_size(p * 8, p * 8)} ")
    lines.append("=" * 75)
    return "".join("|" + line + "|\n" for line in lines)


def test_memory_summary_peaks_are_read_to_the_mebibyte():
    stats = {"allocated_bytes": (1563611648, 17424578048), "active_bytes": (1563611648, 17424578048),
             "requested_bytes": (1563000000, 17400000000), "reserved_bytes": (18171822080, 18171822080),
             "inactive_split_bytes": (100 * MiB, 700 * MiB)}
    m = parse_measured_text(torch_summary(stats))
    # 17424578048 B = 16617.37 MiB, printed floored as "16617 MiB"
    assert m.peak_allocated.bytes == 16617 * MiB
    assert m.peak_allocated.resolution_bytes == MiB
    assert m.peak_reserved.bytes == 17330 * MiB           # 18171822080 / 2**20 = 17330.0
    assert m.current_allocated.bytes == 1491 * MiB        # 1563611648 / 2**20 = 1491.17
    assert m.peak_non_releasable.bytes == 700 * MiB
    assert m.cuda_ooms == 0
    assert m.formats == ("torch.cuda.memory_summary()",)


def test_out_of_memory_count_is_read_and_named():
    stats = {k: (GiB, 2 * GiB) for k in ("allocated_bytes", "active_bytes", "requested_bytes", "reserved_bytes",
                                         "inactive_split_bytes")}
    m = parse_measured_text(torch_summary(stats, ooms=3))
    assert m.cuda_ooms == 3
    resp = estimate_dict({"model": "gpt2", "precision": {"weights": "fp32"}, "measured": {"text": torch_summary(stats, 3)}})
    ck = resp["result"]["check"]
    assert ck["explanations"][0]["assumption"] == "out of memory"
    assert ck["record"]["measured"]["status"] == "oom"


@pytest.mark.parametrize("text, field, value", [
    ("torch.cuda.max_memory_allocated() = 21474836480", "peak_allocated", 21474836480),
    ("max_memory_allocated: 21,474,836,480", "peak_allocated", 21474836480),
    ("Peak allocated: 20.00 GiB", "peak_allocated", 20 * GiB),
    ("max_memory_reserved 21.5 GB", "peak_reserved", 21_500_000_000),       # GB is 10**9
    ("torch.cuda.max_memory_reserved(device=0) -> 1536 MiB", "peak_reserved", 1536 * MiB),   # the 0 is an argument
    (">>> torch.cuda.max_memory_allocated()\n17424578048\n", "peak_allocated", 17424578048),   # a REPL
    ("memory_allocated = 123456", "current_allocated", 123456),
])
def test_torch_numbers_are_read_with_their_unit(text, field, value):
    assert getattr(parse_measured_text(text), field).bytes == value


def test_a_fraction_without_a_unit_is_refused_not_guessed():
    with pytest.raises(InputError) as err:
        parse_measured_text("max_memory_allocated: 21.47")
    assert err.value.field == "measured.text" and "unit" in err.value.message


def test_the_exact_number_wins_over_the_summary_mebibytes():
    stats = {k: (GiB, 17424578048) for k in ("allocated_bytes", "active_bytes", "requested_bytes", "reserved_bytes",
                                             "inactive_split_bytes")}
    text = torch_summary(stats) + "torch.cuda.max_memory_allocated() = 17424578048\n"
    assert parse_measured_text(text).peak_allocated.bytes == 17424578048


def test_nvidia_smi_table_and_csv():
    table = """+-----------------------------------------------------------------------------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
|=========================================+========================+======================|
|   0  NVIDIA H100 80GB HBM3          On  |   00000000:19:00.0 Off |                    0 |
| N/A   33C    P0            120W /  700W |   18082MiB /  81559MiB |     45%      Default |
|   1  NVIDIA H100 80GB HBM3          On  |   00000000:3B:00.0 Off |                    0 |
| N/A   35C    P0            130W /  700W |   19120MiB /  81559MiB |     47%      Default |
"""
    m = parse_measured_text(table)
    assert [r.bytes for r in m.device_used] == [18082 * MiB, 19120 * MiB]
    assert m.device_total.bytes == 81559 * MiB
    csv = "memory.used [MiB], memory.total [MiB]\n18082 MiB, 81559 MiB\n"
    assert parse_measured_text(csv).device_used[0].bytes == 18082 * MiB
    nounits = "memory.used [MiB]\n18082\n"
    assert parse_measured_text(nounits).device_used[0].bytes == 18082 * MiB


@pytest.mark.parametrize("text", ["", "hello", "loss 2.31 step 100", "|  a | b |"])
def test_text_with_no_figure_names_the_field(text):
    with pytest.raises(InputError) as err:
        parse_measured({"text": text} if text else {"text": "x"})
    assert err.value.field.startswith("measured")


def test_untrusted_text_is_bounded():
    with pytest.raises(InputError, match="longer than"):
        parse_measured_text("max_memory_allocated 1\n" + "x" * MAX_TEXT_CHARS)
    with pytest.raises(InputError, match="lines"):
        parse_measured_text("\n" * (MAX_LINES + 1))
    # a line of a hundred thousand digits and separators is cut to its first 400 characters and refused
    with pytest.raises(InputError, match="line 1: cannot read the number"):
        parse_measured_text("max_memory_allocated " + "1" * 18 + ",1" * 50_000 + "\nmemory_reserved 5")
    m = parse_measured_text("x" * 100_000 + " max_memory_allocated 7\nmemory_reserved 5")
    assert m.current_reserved.bytes == 5 and m.peak_allocated is None      # the call was past the cut
    # unknown fields and wrong types name the field
    for bad, field in (({"texts": "x"}, "measured.texts"), ({"peak_allocated_bytes": -1}, "measured.peak_allocated_bytes"),
                       ({"peak_allocated_bytes": 1.5}, "measured.peak_allocated_bytes"), ("x", "measured")):
        resp = json.loads(estimate(json.dumps({"model": "gpt2", "measured": bad})))
        assert resp["status"] == "error" and resp["errors"][0]["field"] == field, (bad, resp)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_is_read_or_refused_with_a_named_field(text):
    resp = json.loads(estimate(json.dumps({"model": "gpt2", "measured": {"text": "|" + text}})))
    if resp["status"] == "error":
        assert resp["errors"][0]["field"].startswith("measured"), resp
    else:
        assert all(isinstance(r["measured_bytes"], int) for r in resp["result"]["check"]["rows"])


def _checked(rec: dict, **changes):
    """The record's request with the record's own measured numbers pasted as torch prints them."""
    req = request_from_record(rec)
    for path, value in changes.items():
        section, key = path.split(".")
        req[section][key] = value
    m = rec["measured"]
    used = (m["peak_reserved_bytes"] + m["cuda_context_bytes"]) // MiB
    req["measured"] = {"text": f"max_memory_allocated() = {m['peak_allocated_bytes']}\n"
                               f"max_memory_reserved() = {m['peak_reserved_bytes']}\n"
                               f"|  {used}MiB / 81559MiB |\n"}
    resp = estimate_dict(req)
    assert resp["status"] == "ok", resp
    return resp["result"]


def test_a_measured_run_is_set_beside_the_same_estimate():
    rec = records()["llama1b-train-bf16-adamw-b4-s2048"]
    res = _checked(rec)
    rows = {r["quantity"].split(" (")[0]: r for r in res["check"]["rows"]}
    m = rec["measured"]
    assert rows["peak allocated"]["measured_bytes"] == m["peak_allocated_bytes"]
    assert rows["peak allocated"]["estimated_bytes"] == res["peak_allocated_bytes"]
    assert rows["peak reserved"]["measured_bytes"] == m["peak_reserved_bytes"]
    assert rows["allocator reserve"]["measured_bytes"] == m["peak_reserved_bytes"] - m["peak_allocated_bytes"]
    assert rows["device total"]["estimated_bytes"] == res["device_total_bytes"]
    # nvidia-smi less reserved is the context the run measured (to the MiB nvidia-smi prints)
    outside = rows["outside the allocator"]["measured_bytes"]
    assert abs(outside - m["cuda_context_bytes"]) < MiB
    assert res["check"]["verdict"] == "agrees"


@pytest.mark.parametrize("case, stated, expected", [
    ("gpt2-train-amp-adamw-b8-s1024-eager", {"workload.attention": "sdpa"}, "attention kernel"),
    ("bert-train-fp32-adamw-b32-s128-eager", {"workload.attention": "sdpa"}, "attention kernel"),
    ("gpt2-train-amp-adamw-b16-s1024-ckpt", {"workload.gradient_checkpointing": False}, "gradient checkpointing"),
    ("qwen15-train-amp-adamwfused-b4-s1024-ckpt", {"workload.gradient_checkpointing": False}, "gradient checkpointing"),
])
def test_the_unstated_assumption_behind_a_gap_is_named_first(case, stated, expected):
    """A measured run, estimated with one setting wrong: the check names that setting."""
    res = _checked(records()[case], **stated)
    assert res["check"]["verdict"] != "agrees"
    first = res["check"]["explanations"][0]
    assert first["assumption"] == expected, res["check"]["explanations"]
    # and the named alternative lands close to what was measured
    assert abs(first["estimated_bytes"] - records()[case]["measured"]["peak_allocated_bytes"]) < \
        0.5 * abs(res["check"]["rows"][0]["gap_bytes"])


def test_a_larger_cuda_context_is_read_off_nvidia_smi():
    rec = records()["llama1b-train-bf16-adamw-b4-s2048"]
    req = request_from_record(rec)
    m = rec["measured"]
    # a V100 in 2022 (issue 13): 1,343 MiB outside the allocator
    used = m["peak_reserved_bytes"] // MiB + 1343
    req["measured"] = {"peak_allocated_bytes": m["peak_allocated_bytes"], "peak_reserved_bytes": m["peak_reserved_bytes"],
                       "device_used_bytes": used * MiB}
    ck = estimate_dict(req)["result"]["check"]
    ctx = next(e for e in ck["explanations"] if e["assumption"] == "CUDA context")
    assert ctx["change"] == f"--cuda-context-mib {used * MiB - m['peak_reserved_bytes'] >> 20}"
    assert 1342 <= int(ctx["change"].split()[-1]) <= 1343


def test_records_round_trip_through_the_request():
    """Every shared record, made a request and checked with its own peak, gives back its workload."""
    for rec in records().values():
        req = request_from_record(rec)
        m = rec["measured"]
        req["measured"] = {"peak_allocated_bytes": m["peak_allocated_bytes"]}
        resp = estimate_dict(req)
        record, note = calibration_record(req, resp["result"], parse_measured(req["measured"]))
        assert record is not None, note
        want = {k: v for k, v in rec["workload"].items() if k != "steps_measured"}
        assert record["workload"] == want, rec["id"]
        assert record["hf_config"] == rec["hf_config"]
        assert record["measured"]["peak_allocated_bytes"] == m["peak_allocated_bytes"]


def test_a_user_record_is_scored_by_calibrate(tmp_path, calibrate):
    rec = records()["qwen05-lora-bf16-b4-s1024"]
    res = _checked(rec)
    path = tmp_path / "user.jsonl"
    path.write_text(json.dumps(res["check"]["record"]) + "\n")
    rows, summary = calibrate.run([str(path)])
    assert summary["errors"] == 0 and summary["cases"] == 1 and summary["param_mismatch"] == 0
    assert rows[0]["measured"] == rec["measured"]["peak_allocated_bytes"]


def test_no_record_for_a_model_given_by_dimensions_or_without_a_peak():
    dims = {"dimensions": {"n_layers": 2, "hidden_size": 64, "n_heads": 4, "vocab_size": 100}}
    res = estimate_dict({"model": dims, "measured": {"peak_allocated_bytes": 5 * GiB}})["result"]
    assert res["check"]["record"] is None and "dimensions" in res["check"]["record_note"]
    res = estimate_dict({"model": "gpt2", "measured": {"device_used_bytes": 5 * GiB}})["result"]
    assert res["check"]["record"] is None and "peak allocation" in res["check"]["record_note"]


def test_measure_hf_flat_records_convert_to_the_shared_format():
    """measure_hf.py's own field names for the first shared case, written out by hand, convert to
    exactly the record the shared file holds."""
    shared = records()["gpt2-train-fp32-adamw-b8-s1024"]
    m = shared["measured"]
    flat = {"id": "gpt2-train-fp32-adamw-b8-s1024", "model": "gpt2", "mode": "train", "weights": "fp32", "batch": 8,
            "seq": 1024, "optim": "adamw", "steps": 3, "n_params": 124439808, "weights_bytes": 498559488,
            "n_trainable": 124439808, "step_start_bytes": 1563611648, "fwd_peak_bytes": 14131066880,
            "after_fwd_bytes": 14131000832, "after_bwd_bytes": 2064254464, "bwd_peak_bytes": 17424578048,
            "after_opt_bytes": 2064254464, "steady_peak_bytes": 17424578048, "peak_alloc_bytes": 17424578048,
            "status": "ok", "peak_reserved_bytes": 18171822080, "context_bytes": 787283968,
            "gpu_total_bytes": 85017493504, "torch": "2.11.0+cu130", "transformers": "5.17.0", "seconds": 9.1}
    models = {"gpt2": dict(model_type="gpt2", n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)}
    rec = record_from_flat(flat, models, gpu="NVIDIA H100 80GB HBM3")
    assert rec["workload"] == shared["workload"]
    assert rec["measured"] == m
    assert rec["env"] == shared["env"]
    assert {k: shared["hf_config"][k] for k in models["gpt2"]} == models["gpt2"]
    # and the converted record estimates as the shared one does
    a = estimate_dict(request_from_record(rec))["result"]["peak_allocated_bytes"]
    b = estimate_dict(request_from_record(shared))["result"]["peak_allocated_bytes"]
    assert a == b


def test_converter_script_reads_measure_hf_models(tmp_path):
    if not (SHARED / "measure_hf.py").exists():
        pytest.skip("shared calibration not present")
    flat = tmp_path / "flat.jsonl"
    flat.write_text(json.dumps({"id": "x", "model": "llama-3.2-1b", "mode": "infer", "weights": "bf16", "batch": 2,
                                "seq": 128, "new_tokens": 16, "n_params": 1, "weights_bytes": 1, "peak_alloc_bytes": 5,
                                "status": "ok", "peak_reserved_bytes": 6, "context_bytes": 7, "gpu_total_bytes": 8,
                                "torch": "2.9.0", "transformers": "4.57.0"}) + "\n"
                    + json.dumps({"id": "y", "status": "error", "error": "boom"}) + "\n")
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_measurements.py"), str(flat), str(out),
                           "--gpu", "NVIDIA L4"], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "records=1 skipped=1 (y)"
    rec = json.loads(out.read_text())
    assert rec["hf_config"]["num_hidden_layers"] == 16 and rec["hf_config"]["model_type"] == "llama"
    assert rec["workload"] == {"mode": "inference", "weights_dtype": "bf16", "autocast_dtype": None, "attention": "sdpa",
                               "batch_size": 2, "seq_len": 128, "new_tokens": 16}
    # the versions the run had are the versions the record is estimated with
    assert request_from_record(rec)["framework"] == {"torch": "2.9.0", "transformers": "4.57.0"}


def test_cli_check(tmp_path):
    stats = {"allocated_bytes": (GiB, 17424578048), "active_bytes": (GiB, 17424578048),
             "requested_bytes": (GiB, 17424578048), "reserved_bytes": (18171822080, 18171822080),
             "inactive_split_bytes": (0, 0)}
    text = tmp_path / "summary.txt"
    text.write_text(torch_summary(stats))
    rec = tmp_path / "rec.jsonl"
    cmd = [sys.executable, "-m", "pycore", "check", "--model", "gpt2", "--weights", "fp32", "--batch", "8", "--seq",
           "1024", "--measured", str(text), "--record", str(rec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "peak allocated" in proc.stdout and "agrees" in proc.stdout
    line = json.loads(rec.read_text())
    assert line["measured"]["peak_allocated_bytes"] == 16617 * MiB
    proc = subprocess.run(cmd[:-4] + ["--measured", "/dev/zero"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "--measured" in proc.stderr
