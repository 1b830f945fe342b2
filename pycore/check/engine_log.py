"""Read a serving engine's start-up log: the figures vLLM, SGLang and llama.cpp print about their memory.

The text is untrusted (a file given to the CLI, or pasted into the page): it is bounded in length and
lines as ``check`` bounds a measured run (pycore/check/parse.py), each line is cut to a fixed width,
and every pattern is a linear scan. The lines read, as the engines print them:

- vLLM V1 (gpu_worker.py, gpu_model_runner.py, kv_cache_utils.py, 0.10-0.19): ``vLLM API server
  version X``, ``non-default args: {...}``, ``Chunked prefill is enabled with max_num_batched_tokens=N``,
  ``Model loading took X GiB``, ``Available KV cache memory: X GiB``, ``GPU KV cache size: N tokens``,
  ``Maximum concurrency for N tokens per request: Xx``, ``Estimated CUDA graph memory: X GiB total``,
  ``Free memory on device (F/T GiB) on startup. Desired GPU memory utilization is (U, R GiB). Actual
  usage is W GiB for weight, A GiB for peak activation, N GiB for non-torch memory, and G GiB for
  CUDAGraph memory.``
- SGLang (model_runner.py, scheduler.py): ``Load weight begin. avail mem=X GB``, ``Load weight end.
  ... mem usage=X GB``, ``KV Cache is allocated. #tokens: N, K size: X GB, V size: X GB`` (or ``KV
  size``), ``max_total_num_tokens=N, ..., max_running_requests=R, context_len=C``, ``server_args=
  ServerArgs(...)``. Its "GB" are GiB (x / (1 << 30)).
- llama.cpp (src/llama-model.cpp, llama-kv-cache*.cpp, llama-context.cpp): ``build: N``, ``<DEV> model
  buffer size = X MiB``, ``<DEV> KV buffer size = X MiB``, ``<DEV> compute buffer size = X MiB``,
  ``n_ctx = N``, ``offloaded A/B layers to GPU``, ``file type = ...``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import InputError
from ..units import GiB, MiB
from .parse import MAX_LINES, MAX_TEXT_CHARS

MAX_ENGINE_LINE_CHARS = 2000        # vLLM's "Free memory on device" line is about 600 characters
FIELD = "engine_log"
_N = r"(\d{1,9}(?:\.\d{1,6})?)"
_INT = r"(\d{1,3}(?:,\d{3}){0,5}|\d{1,15})"

VLLM = {
    "version": re.compile(r"vLLM API server version v?(\d{1,3}\.\d{1,3}(?:\.\d{1,3})?)"),
    "version_engine": re.compile(r"Initializing a V1 LLM engine \(v(\d{1,3}\.\d{1,3}(?:\.\d{1,3})?)"),
    "weights": re.compile(r"(?:Model loading took|Loading model weights took) " + _N + r" ?GiB?"),
    "gpu_blocks": re.compile(r"# GPU blocks: (\d{1,12})"),
    "available_kv": re.compile(r"Available KV cache memory: " + _N + r" ?GiB"),
    "kv_tokens": re.compile(r"GPU KV cache size: " + _INT + r" tokens"),
    "concurrency": re.compile(r"Maximum concurrency for " + _INT + r" tokens per request: " + _N + r"x"),
    "graphs_estimate": re.compile(r"Estimated CUDA graph memory: " + _N + r" ?GiB"),
    "mnbt": re.compile(r"Chunked prefill is enabled with max_num_batched_tokens=(\d{1,9})"),
    "usage": re.compile(r"Free memory on device \(" + _N + "/" + _N + r" GiB\) on startup\. Desired GPU memory "
                        r"utilization is \(" + _N + ", " + _N + r" GiB\)\. Actual usage is " + _N +
                        r" GiB for weight, " + _N + r" GiB for peak activation, " + _N +
                        r" GiB for non-torch memory, and " + _N + r" GiB for CUDAGraph memory"),
    "usage_consumed": re.compile(r"Free memory on device \(" + _N + "/" + _N + r" GiB\) on startup\. Desired GPU "
                                 r"memory utilization is \(" + _N + ", " + _N + r" GiB\)\. Actual usage is " + _N +
                                 r" GiB for consumed memory \(weights \+ non-torch\), " + _N +
                                 r" GiB for peak activation, and " + _N + r" GiB for CUDAGraph memory"),
    "kv_in_use": re.compile(r"Current kv cache memory in use is (?:(\d{1,15}) bytes|" + _N + r" GiB)"),
    "args": re.compile(r"non-default args: \{(.{0,1800})\}"),
    "refusal": re.compile(r"max seq len \((\d{1,9})\), \(" + _N + r" GiB KV cache is needed, which is larger than the "
                          r"available KV cache memory \(" + _N + r" GiB\)(?:\. Based on the available memory, the "
                          r"estimated maximum model length is (\d{1,9}))?"),
}
SGLANG = {
    "free_before": re.compile(r"Load weight begin\. avail mem=" + _N + " ?GB"),
    "weights": re.compile(r"Load weight end\..{0,200}?mem usage=" + _N + " ?GB"),
    "kv": re.compile(r"KV Cache is allocated\. #tokens: (\d{1,12}), (?:K size: " + _N + r" ?GB, V size: " + _N +
                     r" ?GB|KV size: " + _N + r" ?GB)"),
    "totals": re.compile(r"max_total_num_tokens=(\d{1,12}),.{0,200}?max_running_requests=(\d{1,9}),"
                         r".{0,40}?context_len=(\d{1,12})"),
    "chunked": re.compile(r"chunked_prefill_size=(-?\d{1,9})"),
    "args": re.compile(r"server_args=ServerArgs\((.{0,1900})"),
    "version": re.compile(r"sglang(?: version|==| v)\s?(\d{1,3}\.\d{1,3}(?:\.\d{1,3})?)", re.I),
}
_DEV = r"([A-Za-z_][\w]{0,20}(?:\[[^\]]{1,40}\])?)"
LLAMA = {
    "version": re.compile(r"\bbuild(?::| =) ?(\d{1,6})\b"),
    "model_buffer": re.compile(_DEV + r" model buffer size = +" + _N + " MiB"),
    "kv_buffer": re.compile(_DEV + r" KV buffer size = +" + _N + " MiB"),
    "compute_buffer": re.compile(_DEV + r" compute buffer size = +" + _N + " MiB"),
    "n_ctx": re.compile(r"\bn_ctx += (\d{1,9})"),
    "n_batch": re.compile(r"\bn_batch += (\d{1,9})"),
    "n_ubatch": re.compile(r"\bn_ubatch += (\d{1,9})"),
    "flash_attn": re.compile(r"\bflash_attn += (0|1|auto|enabled|disabled|true|false)\b"),
    "kv_size": re.compile(r"(?:llama_kv_cache\w{0,20}|KV self size): +size = +" + _N + r" MiB \( *(\d{1,9}) cells"),
    "offloaded": re.compile(r"offloaded (\d{1,6})/(\d{1,6}) layers to GPU"),
    "file_type": re.compile(r"file type += ([A-Za-z0-9_ .-]{1,40})"),
    "model_path": re.compile(r"loaded meta data with .{0,80}? from (\S{1,300}\.gguf)"),
}
MARKERS = {"vllm": ("vLLM", "gpu_worker.py", "kv_cache_utils.py", "Available KV cache memory", "vllm",
                    "KV cache is needed, which is larger than the available KV cache memory", "# GPU blocks:",
                    "gpu_model_runner.py", "Model loading took"),
           "sglang": ("Load weight begin", "Load weight end", "KV Cache is allocated", "max_total_num_tokens", "ServerArgs", "sglang"),
           "llamacpp": ("llama_model_loader", "load_tensors", "llama_context", "llama_kv_cache", "print_info",
                        "llm_load_tensors", "llama_new_context_with_model")}
ENGINE_NAMES = {"vllm": "vLLM", "sglang": "SGLang", "llamacpp": "llama.cpp"}


@dataclass(frozen=True)
class EngineLog:
    engine: str
    version: str | None
    figures: dict                                  # name -> bytes, tokens or a ratio
    settings: dict = field(default_factory=dict)   # engine settings the log states (the engine's own names)
    devices: dict = field(default_factory=dict)    # llama.cpp: {"model"|"kv"|"compute": {device: bytes}}
    model: str | None = None                       # the model the log names (Hub id or file)
    lines: tuple = ()                              # the lines read, verbatim (for a record)


def _lines(text) -> list[str]:
    if not isinstance(text, str) or not text.strip():
        raise InputError(FIELD, "is empty; give the engine's start-up log")
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(FIELD, f"is longer than {MAX_TEXT_CHARS:,} characters; give the start-up part of the log "
                                "(up to the KV cache lines)")
    lines = text.splitlines()
    if len(lines) > MAX_LINES:
        raise InputError(FIELD, f"has more than {MAX_LINES:,} lines; give the start-up part of the log")
    out: list[str] = []
    for line in lines:
        line = line[:MAX_ENGINE_LINE_CHARS]
        if out and line.startswith(" " * 8) and line.strip() and len(out[-1]) < MAX_ENGINE_LINE_CHARS:
            out[-1] = (out[-1].rstrip() + " " + line.strip())[:MAX_ENGINE_LINE_CHARS]     # a wrapped line
        else:
            out.append(line)
    return out


def detect_engine(lines: list[str]) -> str:
    """The engine whose markers the log holds most of."""
    hits = {e: sum(1 for line in lines if any(k in line for k in keys)) for e, keys in MARKERS.items()}
    best = max(hits, key=hits.get)
    if not hits[best]:
        raise InputError(FIELD, "holds no start-up line of vLLM, SGLang or llama.cpp (looked for 'Available KV "
                                "cache memory', 'KV Cache is allocated', 'KV buffer size')")
    return best


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def _args(text: str) -> dict:
    """key: value pairs of a printed dict or dataclass (only scalars are kept)."""
    out = {}
    for m in re.finditer(r"'?([a-z_]{1,40})'?\s?[:=]\s?('[^']{0,200}'|\"[^\"]{0,200}\"|True|False|None|-?\d{1,12}"
                         r"(?:\.\d{1,9})?)", text):
        raw = m.group(2)
        value = raw[1:-1] if raw[0] in "'\"" else {"True": True, "False": False, "None": None}.get(raw, raw)
        if isinstance(value, str) and raw[0] not in "'\"":
            value = float(value) if "." in value else int(value)
        out.setdefault(m.group(1), value)
    return out


_RANK = re.compile(r"(?:\bWorker_|\[[^\]]{0,40}\s)TP(\d{1,4})\b")


def _ranks(lines: list[str]) -> int:
    """Tensor-parallel ranks the log's prefixes name (vLLM "Worker_TP3", SGLang "[... TP3]"), 0 if none."""
    top = -1
    for line in lines:
        for m in _RANK.finditer(line[:200]):
            top = max(top, int(m.group(1)))
    return top + 1


def _first_matches(lines: list[str], patterns: dict, kept: list):
    """(line, name, match) for the first of ``patterns`` that each line matches; the line is kept."""
    for line in lines:
        for name, pat in patterns.items():
            m = pat.search(line)
            if m:
                kept.append(line)
                yield line, name, m
                break


def _read_vllm(lines: list[str]) -> EngineLog:
    fig, settings, kept, version, model = {}, {}, [], None, None
    for line in lines:
        hits = [(name, m) for name, m in ((n, p.search(line)) for n, p in VLLM.items()) if m]
        if hits:
            kept.append(line)
        for name, m in hits:          # one line may hold several figures (the budget line and the pool)
            if name in ("version", "version_engine"):
                version = version or m.group(1)
            elif name in ("weights", "available_kv", "graphs_estimate"):
                fig.setdefault(name if name != "graphs_estimate" else "cuda_graphs", int(_num(m.group(1)) * GiB))
            elif name == "kv_tokens":
                fig.setdefault("kv_tokens", int(_num(m.group(1))))
            elif name == "concurrency":
                settings.setdefault("max_model_len", int(_num(m.group(1))))
                fig.setdefault("concurrency", _num(m.group(2)))
            elif name == "gpu_blocks":
                fig.setdefault("gpu_blocks", int(m.group(1)))
            elif name == "refusal":
                settings.setdefault("max_model_len", int(m.group(1)))
                fig.setdefault("needed_kv", int(_num(m.group(2)) * GiB))
                fig.setdefault("available_kv", int(_num(m.group(3)) * GiB))
                if m.group(4):
                    fig.setdefault("estimated_max_model_len", int(m.group(4)))
            elif name == "mnbt":
                settings.setdefault("max_num_batched_tokens", int(m.group(1)))
            elif name == "usage":
                f = [_num(x) for x in m.groups()]
                fig.setdefault("total", int(f[1] * GiB))
                settings.setdefault("gpu_memory_utilization", f[2])
                for key, value in zip(("weights", "activation", "non_torch", "cuda_graphs"), f[4:]):
                    fig.setdefault(key, int(value * GiB))
            elif name == "usage_consumed":
                f = [_num(x) for x in m.groups()]
                fig.setdefault("total", int(f[1] * GiB))
                settings.setdefault("gpu_memory_utilization", f[2])
                fig.setdefault("weights_and_non_torch", int(f[4] * GiB))
                fig.setdefault("activation", int(f[5] * GiB))
                fig.setdefault("cuda_graphs", int(f[6] * GiB))
            elif name == "kv_in_use":
                fig.setdefault("kv_in_use", int(m.group(1)) if m.group(1) else int(_num(m.group(2)) * GiB))
            elif name == "args":
                args = _args(m.group(1))
                model = args.pop("model", None) or args.pop("model_tag", None)
                for key in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "max_model_len",
                            "gpu_memory_utilization", "max_num_seqs", "max_num_batched_tokens", "enforce_eager",
                            "kv_cache_dtype", "enable_expert_parallel", "dtype", "quantization", "block_size"):
                    if key in args and args[key] is not None:
                        settings[key] = args[key]
    if _ranks(lines) > 1:
        settings.setdefault("tensor_parallel_size", _ranks(lines))
    return EngineLog("vllm", version, fig, settings, {}, model, tuple(kept))


def _read_sglang(lines: list[str]) -> EngineLog:
    fig, settings, kept, version, model = {}, {}, [], None, None
    for line, name, m in _first_matches(lines, SGLANG, kept):
        if name == "free_before":
            fig.setdefault("free_before_load", int(_num(m.group(1)) * GiB))
        elif name == "weights":
            fig.setdefault("weights", int(_num(m.group(1)) * GiB))
        elif name == "kv":
            fig.setdefault("kv_tokens", int(m.group(1)))
            k, v, kv = m.group(2), m.group(3), m.group(4)
            fig.setdefault("kv_pool", int(((_num(k) + _num(v)) if k else _num(kv)) * GiB))
        elif name == "totals":
            fig.setdefault("kv_tokens", int(m.group(1)))
            fig.setdefault("max_running_requests", int(m.group(2)))
            settings.setdefault("context_length", int(m.group(3)))
            c = SGLANG["chunked"].search(line)
            if c and int(c.group(1)) > 0:
                settings.setdefault("chunked_prefill_size", int(c.group(1)))
        elif name == "args":
            args = _args(m.group(1))
            model = args.get("model_path")
            for key in ("tp_size", "pp_size", "mem_fraction_static", "context_length", "max_running_requests",
                        "max_total_tokens", "chunked_prefill_size", "cuda_graph_max_bs", "page_size",
                        "kv_cache_dtype", "dtype", "quantization"):
                if args.get(key) is not None:
                    settings[key] = args[key]
        elif name == "version":
            version = version or m.group(1)
    if _ranks(lines) > 1:
        settings.setdefault("tp_size", _ranks(lines))
    return EngineLog("sglang", version, fig, settings, {}, model, tuple(kept))


def _read_llama(lines: list[str]) -> EngineLog:
    fig, settings, kept, version, model = {}, {}, [], None, None
    devices = {"model": {}, "kv": {}, "compute": {}}
    for _, name, m in _first_matches(lines, LLAMA, kept):
        if name == "version":
            version = version or f"b{m.group(1)}"
        elif name.endswith("_buffer"):
            kind = name[: -len("_buffer")]
            devices[kind][m.group(1)] = devices[kind].get(m.group(1), 0) + int(round(_num(m.group(2)) * MiB))
        elif name == "n_ctx":
            settings.setdefault("n_ctx", int(m.group(1)))
        elif name in ("n_batch", "n_ubatch"):
            settings.setdefault(name, int(m.group(1)))
        elif name == "flash_attn":
            settings.setdefault("flash_attn", {"0": "off", "disabled": "off", "false": "off", "1": "on",
                                               "enabled": "on", "true": "on"}.get(m.group(1), "auto"))
        elif name == "kv_size":
            fig.setdefault("kv_total", int(round(_num(m.group(1)) * MiB)))
            fig.setdefault("kv_cells", int(m.group(2)))
        elif name == "offloaded":
            settings.setdefault("n_gpu_layers", int(m.group(1)))
            fig.setdefault("layers", int(m.group(2)))
        elif name == "file_type":
            settings.setdefault("file_type", m.group(1).strip())
        elif name == "model_path":
            model = model or m.group(1)
    devices = {k: v for k, v in devices.items() if v}
    return EngineLog("llamacpp", version, fig, settings, devices, model, tuple(kept))


def parse_engine_log(text, engine: str | None = None) -> EngineLog:
    """The figures of a start-up log; ``engine`` (if given) must be the engine the log comes from."""
    lines = _lines(text)
    found = detect_engine(lines)
    if engine and engine != found:
        raise InputError(FIELD, f"is a {ENGINE_NAMES[found]} log, not {ENGINE_NAMES.get(engine, engine)}")
    log = {"vllm": _read_vllm, "sglang": _read_sglang, "llamacpp": _read_llama}[found](lines)
    if not any(log.figures.get(k) for k in ("kv_tokens", "available_kv", "kv_total", "gpu_blocks", "kv_in_use")) \
            and not log.devices:
        raise InputError(FIELD, f"is a {ENGINE_NAMES[found]} log that stops before the KV cache is sized (no "
                                f"{'GPU KV cache size' if found == 'vllm' else 'KV Cache is allocated' if found == 'sglang' else 'buffer size'} "
                                "line); give the log up to that line")
    return log
