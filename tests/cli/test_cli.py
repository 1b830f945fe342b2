"""The command line prints a table, or with --json the same result object as the API."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "pycore", *args], cwd=ROOT, capture_output=True, text=True)


def test_json_output_has_the_peak_fields():
    out = cli("estimate", "--model", "llama-3.2-1b", "--mode", "lora", "--batch", "8", "--seq", "1024", "--json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    for key in ("peak_allocated_bytes", "device_total_bytes", "fits", "breakdown"):
        assert key in res
    # the calibration case llama1b-lora-bf16-b8-s1024 measured 31,500,752,896 bytes
    assert abs(res["peak_allocated_bytes"] - 31_500_752_896) / 31_500_752_896 < 0.02


def test_table_output_and_hf_config_file(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
                               "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
                               "vocab_size": 151936, "tie_word_embeddings": True}))
    out = cli("estimate", "--hf-config", str(cfg), "--mode", "inference", "--batch", "4", "--seq", "512",
              "--new-tokens", "32", "--gpu", "t4-16gb", "--solve")
    assert out.returncode == 0, out.stderr
    assert "FITS" in out.stdout and "largest batch" in out.stdout


def test_bad_input_exits_2_with_the_field():
    out = cli("estimate", "--model", "gpt2", "--batch", "0")
    assert out.returncode == 2 and "workload.batch_size" in out.stderr


def test_catalog_listings():
    models = cli("models").stdout.splitlines()
    gpus = cli("gpus").stdout.splitlines()
    assert len(models) >= 30 and len(gpus) >= 20
    assert any(line.startswith("mi300x-192gb") for line in gpus)
