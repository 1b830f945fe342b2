"""check --engine-log (issue 20): vLLM, SGLang and llama.cpp start-up logs read into figures, compared
with the serving estimate term by term, the gap named, and written as golden-format records. The
logs are public (their sources are named next to each); the expected figures are the ones printed in
them, transcribed by hand into tests/data/golden_serving.json long before this reader existed."""

import json
import time
from pathlib import Path

import pytest

from pycore.check.engine_log import parse_engine_log
from pycore.cli import main
from pycore.errors import InputError
from pycore.units import GiB, MiB

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((ROOT / "tests" / "data" / "golden_serving.json").read_text())["checks"]


def _case(case: str) -> dict:
    return next(c for c in GOLDEN if c.get("case") == case)


def _log(case: str) -> str:
    return "\n".join(_case(case)["verbatim_log"]) + "\n"


# ---- the reader on the project's public logs -----------------------------------------------------

@pytest.mark.parametrize("check", [c for c in GOLDEN if c.get("measure") == "kv_cache_tokens"
                                   and c["request"]["workload"].get("engine") in ("vllm", "sglang")
                                   and c["id"].endswith(":kv_tokens")], ids=lambda c: c["id"])
def test_the_kv_tokens_the_engine_printed_are_read(check):
    log = parse_engine_log("\n".join(check["verbatim_log"]))
    assert log.engine == check["request"]["workload"]["engine"]
    assert log.figures["kv_tokens"] == check["expected"]


@pytest.mark.parametrize("check", [c for c in GOLDEN if c.get("measure", "").startswith("report.compute_buffer_mib.CUDA0")
                                   and "CUDA0 compute buffer" in " ".join(c.get("verbatim_log", []))],
                         ids=lambda c: c["id"])
def test_llama_cpp_compute_buffers_are_read_per_device(check):
    log = parse_engine_log("\n".join(check["verbatim_log"]))
    assert log.engine == "llamacpp"
    assert log.devices["compute"]["CUDA0"] == round(check["expected"] * MiB)


def test_the_vllm_budget_line_is_read_term_by_term():
    # l40s-qwen3-235b-fp8-tp8-v0.10.2: "Actual usage is 27.72 GiB for weight, 1.4 GiB for peak activation,
    # 0.21 GiB for non-torch memory, and 3.45 GiB for CUDAGraph memory"; TP ranks from "Worker_TP3_EP3"
    log = parse_engine_log(_log("l40s-qwen3-235b-fp8-tp8-v0.10.2"))
    assert log.version == "0.10.2" and log.model == "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8"
    assert log.figures["activation"] == int(1.4 * GiB) and log.figures["non_torch"] == int(0.21 * GiB)
    assert log.figures["cuda_graphs"] == int(3.45 * GiB) and log.figures["total"] == int(44.42 * GiB)
    assert log.settings["tensor_parallel_size"] == 8 and log.settings["max_model_len"] == 32768


# Public logs from GitHub issues (search corpus), a few lines each, as printed.
VLLM_21348 = """Available KV cache memory: 8.11 GiB
GPU KV cache size: 178,880 tokens
"""                       # vllm-project/vllm issue #21348 (Qwen3-235B-A22B-FP8, 4 x H100, TP4)
SGLANG_21348 = "KV Cache is allocated. #tokens: 367404, K size: 8.23 GB, V size: 8.23 GB\n"   # same issue, SGLang
LVLLM_35 = """(EngineCore_DP0 pid=15098) INFO 02-12 08:33:42 [gpu_model_runner.py:4216] Model loading took 11.55 GiB memory and 1940.360672 seconds
(EngineCore_DP0 pid=15098) INFO 02-12 08:34:25 [gpu_worker.py:360] Available KV cache memory: 12.57 GiB
(EngineCore_DP0 pid=15098) INFO 02-12 08:34:25 [kv_cache_utils.py:1307] GPU KV cache size: 53,136 tokens
"""                       # guqiong96/Lvllm issue #35 (A40)
CAT_237 = """(Worker_TP0 pid=28145) INFO 08-18 14:15:02 [gpu_worker.py:475] Available KV cache memory: 5.35 GiB
(EngineCore pid=28059) INFO 08-18 14:15:02 [kv_cache_utils.py:1733] GPU KV cache size: 215,401 tokens
(EngineCore pid=28059) INFO 08-18 14:15:02 [kv_cache_utils.py:1734] Maximum concurrency for 8,192 tokens per request: 26.29x
(Worker_TP2 pid=28147) INFO 08-18 14:15:02 [awq_sm70_warmup.py:828] Warming up
"""                       # 1CatAI/1Cat-vLLM issue #237 (4 x V100, TP4)
KOBOLD_724 = """llama_kv_cache_init:        CPU KV buffer size = 82120.00 MiB
llama_new_context_with_model: KV self size  = 82120.00 MiB, K (f16): 41060.00 MiB, V (f16): 41060.00 MiB
"""                       # LostRuins/koboldcpp issue #724 (Qwen1.5-72B)


def test_public_vllm_lines_are_read():
    assert parse_engine_log(VLLM_21348).figures == {"available_kv": int(8.11 * GiB), "kv_tokens": 178880}
    log = parse_engine_log(LVLLM_35)
    assert (log.figures["weights"], log.figures["kv_tokens"]) == (int(11.55 * GiB), 53136)
    log = parse_engine_log(CAT_237)
    assert log.figures["concurrency"] == 26.29 and log.settings == {"max_model_len": 8192, "tensor_parallel_size": 3}


def test_public_sglang_and_llama_cpp_lines_are_read():
    log = parse_engine_log(SGLANG_21348)
    assert log.engine == "sglang" and log.figures["kv_tokens"] == 367404
    assert log.figures["kv_pool"] == int(16.46 * GiB)
    log = parse_engine_log(KOBOLD_724)
    assert log.engine == "llamacpp" and log.devices["kv"]["CPU"] == 82120 * MiB


# ---- the comparison, the gap and the records ------------------------------------------------------

def test_the_check_names_the_profile_peak_for_the_l40s_log(tmp_path, capsys):
    path = tmp_path / "l40s.log"
    path.write_text(_log("l40s-qwen3-235b-fp8-tp8-v0.10.2"))
    record = tmp_path / "records.jsonl"
    assert main(["check", "--engine-log", str(path), "--gpu", "l40s-48gb", "--record", str(record)]) == 0
    out = capsys.readouterr().out
    # 0.10.2 keeps CUDA graphs outside the budget, so the 3.45 vs 2.2 GiB graph gap cannot move the KV memory;
    # the profile peak (1.4 GiB logged) is the budget term furthest from its log.
    assert "gap: profile peak (activation) explains most of the gap" in out
    recs = [json.loads(line) for line in record.read_text().splitlines()]
    assert {r["measure"] for r in recs} >= {"kv_cache_tokens", "report.available_kv_bytes", "report.weights_bytes"}
    kv = next(r for r in recs if r["measure"] == "kv_cache_tokens")
    assert kv["expected"] == 238208 and kv["kind"] == "end-to-end" and kv["verbatim_log"]
    assert kv["request"]["workload"]["quantization"] == "fp8-block"     # from the "-FP8" Hub id


def test_the_records_run_through_the_golden_script(tmp_path, capsys, golden):
    path, record = tmp_path / "phi.log", tmp_path / "r.jsonl"
    path.write_text(_log("phi3-mini-4k-q4km-cuda-fa0-ub256"))
    assert main(["check", "--engine-log", str(path), "--model", "phi-3-mini", "--engine-version", "b5500",
                 "--record", str(record)]) == 0
    checks = [json.loads(line) for line in record.read_text().splitlines()]
    (tmp_path / "g.json").write_text(json.dumps({"checks": checks}))
    rows, _ = golden.run([str(tmp_path / "g.json")])
    assert rows and all("error" not in r for r in rows)
    by = {r["id"].split(":", 1)[1]: r for r in rows}
    assert by["model:CUDA0"]["ok"] and by["kv:CUDA0"]["ok"]      # 2228.82 and 1536.00 MiB, as logged


def test_settings_the_log_omits_come_from_the_command(tmp_path, capsys):
    path = tmp_path / "sg.log"
    path.write_text(_log("qwen3_14b_4x4090_tp4_mfs080"))
    assert main(["check", "--engine-log", str(path), "--gpu", "rtx-4090-24gb", "--engine-version", "0.5.3",
                 "--from-command", "python -m sglang.launch_server --model-path Qwen/Qwen3-14B --tp 4 "
                 "--mem-fraction-static 0.8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["request"]["workload"]["tp_size"] == 4 and out["request"]["model"] == "qwen3-14b"
    assert next(r for r in out["rows"] if r["term"] == "kv_tokens")["logged"] == 298447
    # the catalog's 4090 total (23.5 GiB) is below the 24,564 MiB the log's card had: the pool comes out
    # low although the weights come out low too, so no logged term can explain it
    assert "GPU's total" in out["explanation"]


def test_sglang_free_memory_before_loading_is_compared(tmp_path, capsys):
    path = tmp_path / "l4.log"
    path.write_text(_log("qwq32b_l4x4_tp4_mfs085"))      # "Load weight begin. avail mem=21.63 GB", TP0 prefixes only
    assert main(["check", "--engine-log", str(path), "--gpu", "l4-24gb", "--engine-version", "0.4.3",
                 "--from-command", "python -m sglang.launch_server --model-path Qwen/QwQ-32B --tp 4 "
                 "--mem-fraction-static 0.85", "--model", "qwen2.5-32b", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["term"]: r for r in out["rows"]}
    assert rows["free_before_load"]["logged"] == int(21.63 * GiB) and rows["weights"]["logged"] == int(15.54 * GiB)
    assert out["request"]["workload"]["tp_size"] == 4


# ---- hostile text ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, says", [
    ("", "empty"),
    ("x" * 300_000, "longer than"),
    ("a\n" * 6000, "lines"),
    ("hello world\nnothing to see\n", "no start-up line"),
    ("INFO [gpu_model_runner.py:2392] Model loading took 14.0786 GiB and 10.2 seconds\n", "stops before"),
    ("[2025-03-08 12:29:13 TP0] Load weight begin. avail mem=21.63 GB\n", "stops before"),
    (b"\x00\xff binary".decode("latin-1"), "no start-up line"),
])
def test_bad_logs_get_a_clear_message(text, says):
    with pytest.raises(InputError) as exc:
        parse_engine_log(text)
    assert says in exc.value.message and exc.value.field == "engine_log"


def test_another_engines_log_is_named():
    with pytest.raises(InputError) as exc:
        parse_engine_log(SGLANG_21348, engine="vllm")
    assert "SGLang log, not vLLM" in exc.value.message


def test_pathological_lines_are_read_in_linear_time():
    nasty = ("GPU KV cache size: " + "1," * 900 + "\n") * 30 + ("Free memory on device (" + "9" * 1500 + "\n") * 30
    nasty += "Available KV cache memory: 1.00 GiB\n" + ("non-default args: {" + "'a': " * 400 + "\n") * 30
    assert len(nasty) < 200_000
    start = time.perf_counter()
    log = parse_engine_log(nasty)
    assert time.perf_counter() - start < 2.0
    assert log.figures["available_kv"] == GiB


def test_the_cli_refuses_a_command_of_another_engine(tmp_path, capsys):
    path = tmp_path / "v.log"
    path.write_text(VLLM_21348)
    assert main(["check", "--engine-log", str(path), "--model", "qwen3-235b-a22b",
                 "--from-command", "llama-server -m Qwen3-235B-A22B-Q4_K_M.gguf"]) == 2
    assert "but the log is vllm's" in capsys.readouterr().err


CLUB_1087 = ("(Worker_TP0 pid=223) INFO 08-22 04:42:13 [gpu_worker.py:789] Free memory on device (30.27/31.4 GiB) on "
             "startup. Desired GPU memory utilization is (0.92, 28.88 GiB). Actual usage is 15.03 GiB for consumed memory "
             "(weights + non-torch), 1.59 GiB for peak activation, and 0.09 GiB for CUDAGraph memory. Replace "
             "gpu_memory_utilization config with `--kv-cache-memory=12917635953` (12.03 GiB) to fit into requested "
             "memory, or `--kv-cache-memory=14405811712` (13.42 GiB) to fully utilize gpu memory. Current kv cache "
             "memory in use is 12.26 GiB.\n"
             "(Worker_TP1 pid=238) INFO 08-22 04:42:13 [gpu_worker.py:726] CUDA graph pool memory: 0.09 GiB (actual), "
             "0.13 GiB (estimated), difference: 0.04 GiB (51.1%).\n")
# noonghunna/club-3090 issue #1087 (2 x RTX 5090, TP2), two lines as printed


def test_the_newer_budget_line_with_consumed_memory_is_read():
    log = parse_engine_log(CLUB_1087)
    assert log.figures["weights_and_non_torch"] == int(15.03 * GiB) and log.figures["activation"] == int(1.59 * GiB)
    assert log.figures["total"] == int(31.4 * GiB) and log.settings["gpu_memory_utilization"] == 0.92
    assert log.settings["tensor_parallel_size"] == 2 and log.figures["kv_in_use"] == int(12.26 * GiB)


def test_records_of_a_log_are_scored_by_the_golden_script_as_jsonl(tmp_path, capsys, golden):
    path, record = tmp_path / "l40s.log", tmp_path / "held_out.jsonl"
    path.write_text(_log("l40s-qwen3-235b-fp8-tp8-v0.10.2"))
    assert main(["check", "--engine-log", str(path), "--gpu", "l40s-48gb", "--record", str(record)]) == 0
    capsys.readouterr()
    golden.main([str(record)])
    fit, verify = capsys.readouterr().out.strip().splitlines()[-2:]
    assert fit.startswith("fit cases=7 ") and verify.startswith("verify cases=0 ")     # vLLM 0.10.2: fit part


def test_random_text_gives_input_errors_only():
    import random
    from pycore.api import estimate_dict
    from pycore.serving.commands import read_command
    rng = random.Random(20)
    words = ["vllm", "serve", "--max-model-len", "-c", "llama-server", "-m", "x.gguf", "python", "-m",
             "sglang.launch_server", "--tp", "'", '"', "=", "--model-path", "Qwen/Qwen2.5-7B-Instruct", "8192", "-ngl",
             "KV Cache is allocated. #tokens:", "GPU KV cache size:", "model buffer size =", "MiB", "GiB", "\n", "1,0"]
    for _ in range(400):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(0, 30)))
        try:
            cmd = read_command(text)
            resp = estimate_dict({"model": cmd["model"], "workload": cmd["workload"]})
            assert resp["status"] in ("ok", "error")
        except InputError:
            pass
        try:
            parse_engine_log(text)
        except InputError:
            pass


def test_the_json_api_reads_a_log_as_the_cli_does():
    # the page's engine-log box calls pycore.api.engine_log; it must give the same rows as the CLI
    from pycore.api import engine_log
    text = _log("l40s-qwen3-235b-fp8-tp8-v0.10.2")
    resp = json.loads(engine_log(json.dumps({"text": text, "gpu": "l40s-48gb"})))
    assert resp["status"] == "ok", resp
    out = resp["result"]
    kv = next(r for r in out["rows"] if r["term"] == "kv_tokens")
    assert kv["logged"] == 238208                          # printed in the log, transcribed by hand
    assert out["explanation"].startswith("profile peak (activation) explains most of the gap")
    for bad, field in (({"text": ""}, "engine_log.text"), ({"text": text, "colour": 1}, "engine_log.colour"),
                       ({"text": text, "command": "llama-server -m x.gguf"}, "engine_log.command")):
        err = json.loads(engine_log(json.dumps(bad)))["errors"][0]
        assert err["field"] == field, err
    assert json.loads(engine_log("[1, 2"))["errors"][0]["field"] == "engine_log"
