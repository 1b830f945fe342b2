"""Command line: ``python -m pycore estimate|models|gpus``. It calls the same JSON API as the page."""

from __future__ import annotations

import argparse
import json
import sys

from .api import estimate_dict
from .jsontext import MAX_JSON_CHARS
from .catalog import gpu_entries, model_entries
from .model.hfconfig import read_hf_config
from .model.params import total_params
from .units import GB, GiB


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pycore", description="Will this fit? GPU memory for transformer runs.")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("estimate", help="estimate the peak memory of one configuration")
    e.add_argument("--model", help="catalog id (see `models`)")
    e.add_argument("--hf-config", metavar="FILE", help="a Hugging Face config.json instead of --model")
    e.add_argument("--mode", default="full", help="full, lora, qlora or inference")
    e.add_argument("--batch", type=int, default=1)
    e.add_argument("--seq", type=int, default=2048, help="tokens per sequence (the prompt, for inference)")
    e.add_argument("--new-tokens", type=int, default=0, help="inference: tokens generated (0 = one forward pass)")
    e.add_argument("--weights", default=None, help="fp32, bf16, fp16; for inference also fp8, int8, int4")
    e.add_argument("--autocast", default=None, help="bf16 or fp16: mixed precision over fp32 weights")
    e.add_argument("--kv-cache", default=None, help="KV cache dtype (default: the compute dtype)")
    e.add_argument("--optimizer", default="adamw")
    e.add_argument("--attention", default="sdpa", help="sdpa, flash or eager")
    e.add_argument("--checkpointing", action="store_true", help="gradient checkpointing on every layer")
    e.add_argument("--lora-rank", type=int, default=16)
    e.add_argument("--lora-alpha", type=int, default=32)
    e.add_argument("--lora-targets", default=None,
                   help="comma-separated module names, or all-linear (default: the attention projections)")
    e.add_argument("--dp", type=int, default=1, help="data-parallel GPUs (training)")
    e.add_argument("--zero", type=int, default=0, help="ZeRO stage 0-3: shard states (1), gradients (2), weights (3)")
    e.add_argument("--gpu", default="h100-sxm-80gb", help="catalog id (see `gpus`)")
    e.add_argument("--gpu-memory-gib", type=float, default=None, help="a custom GPU's memory instead of --gpu")
    e.add_argument("--solve", action="store_true", help="also find the largest batch/sequence and what makes it fit")
    e.add_argument("--json", action="store_true", help="print the result object as JSON")
    sub.add_parser("models", help="list the model catalog")
    sub.add_parser("gpus", help="list the GPU catalog")
    return p


def build_request(a) -> tuple[dict, str | None]:
    req: dict = {"schema": 1}
    if a.hf_config:
        text, problem = read_text_file(a.hf_config, "--hf-config")
        if problem:
            return {}, problem
        req["hf_config"] = text             # parsed by the core, bounded in size and depth
    elif a.model:
        req["model"] = a.model
    else:
        return {}, "give --model ID or --hf-config FILE"
    targets = a.lora_targets
    if targets not in (None, "all-linear"):
        targets = [t for t in targets.split(",") if t]
    req["workload"] = {"mode": a.mode, "batch_size": a.batch, "seq_len": a.seq, "new_tokens": a.new_tokens,
                       "optimizer": a.optimizer, "attention": a.attention, "gradient_checkpointing": a.checkpointing,
                       "lora": {"rank": a.lora_rank, "alpha": a.lora_alpha}}
    if targets is not None:
        req["workload"]["lora"]["targets"] = targets
    weights = a.weights or ("fp32" if a.autocast else "bf16")
    req["precision"] = {"weights": weights, "autocast": a.autocast, "kv_cache": a.kv_cache}
    req["gpu"] = {"memory_gib": a.gpu_memory_gib} if a.gpu_memory_gib is not None else a.gpu
    req["solve"] = a.solve
    if a.dp != 1 or a.zero:
        req["parallelism"] = {"data_parallel": a.dp, "zero_stage": a.zero}
    return req, None


def read_text_file(path: str, option: str) -> tuple[str, str | None]:
    """Read at most MAX_JSON_CHARS characters of UTF-8 text; a longer file (or /dev/zero) is refused
    without reading the rest."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(4 * MAX_JSON_CHARS + 4)          # UTF-8 takes at most 4 bytes a character
    except OSError as exc:
        return "", f"{option}: cannot read {printable(path)}: {printable(exc.strerror or str(exc))}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "", f"{option}: {printable(path)} is not UTF-8 text (byte {exc.start})"
    if len(text) > MAX_JSON_CHARS:
        return "", f"{option}: {printable(path)} is longer than {MAX_JSON_CHARS:,} characters"
    return text, None


def printable(text: str) -> str:
    """``text`` with control characters, lone surrogates and other unprintable characters escaped,
    so that a name from a config file cannot move the cursor, retitle or clear the terminal."""
    return "".join(ch if ch.isprintable() or ch == "\n" else ascii(ch)[1:-1] for ch in str(text))


class _Printable:
    """A stream that escapes what it writes (see ``printable``)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(printable(text))


def _gib(n: int) -> str:
    return f"{n / GiB:8.2f} GiB"


def _print_tree(node: dict, depth: int, out) -> None:
    out.write(f"{'  ' * depth}{node['name']:<{52 - 2 * depth}} {_gib(node['bytes'])}\n")
    if depth < 2:
        for child in node.get("children", []):
            _print_tree(child, depth + 1, out)


def render(res: dict, out=None) -> None:
    out = _Printable(out or sys.stdout)
    m, g = res["model"], res["gpu"]
    out.write(f"{m['name']} ({res['params']['total'] / 1e9:.3f} B parameters) on {g['name']} "
              f"({g['memory_bytes'] / GiB:.1f} GiB)\n\n")
    _print_tree(res["breakdown"], 0, out)
    verdict = "FITS" if res["fits"] else "DOES NOT FIT"
    head = res["headroom_bytes"]
    out.write(f"\npeak allocated (torch.cuda.max_memory_allocated): {_gib(res['peak_allocated_bytes'])}"
              f"  at {res['peak_phase']}: {res['peak_moment']}\n")
    out.write(f"device total (nvidia-smi):                        {_gib(res['device_total_bytes'])}"
              f"  = {res['device_total_bytes'] / GB:.1f} GB\n")
    out.write(f"{verdict}: {'headroom' if head >= 0 else 'short by'} {abs(head) / GiB:.2f} GiB\n")
    for w in res["warnings"]:
        out.write(f"warning: {w}\n")
    if "max_batch_size" in res:
        out.write(f"largest batch that fits: {res['max_batch_size']}; largest sequence: {res['max_seq_len']}\n")
        for s in res["suggestions"][:6]:
            out.write(f"  - {s['change']}: {s['device_total_bytes'] / GiB:.2f} GiB"
                      f"{' (fits)' if s['fits'] else ''}\n")


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    if a.command == "models":
        for mid, entry in sorted(model_entries().items()):
            m = read_hf_config(entry["hf_config"], mid)
            print(f"{mid:22s} {entry['family']:10s} {total_params(m) / 1e9:9.3f} B  {m.model_type}")
        return 0
    if a.command == "gpus":
        for gid, g in sorted(gpu_entries().items(), key=lambda kv: kv[1]["memory_bytes"]):
            print(f"{gid:20s} {g['memory_bytes'] / GiB:7.1f} GiB  {g['name']}")
        return 0
    req, problem = build_request(a)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    resp = estimate_dict(req)
    if resp["status"] != "ok":
        for err in resp["errors"]:
            print(printable(f"error: {err['field']}: {err['message']}"), file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(resp["result"], indent=1))
    else:
        render(resp["result"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
