"""Engine launch commands both ways: read ``vllm serve ...``, ``python -m sglang.launch_server ...`` or
``llama-server -m ... -c ... -ngl ...`` into a serving request, and write the command that starts the
engine with the settings an answer assumed.

The command is untrusted text: it is bounded in length and tokens, split as a POSIX shell would
(shlex), and every flag is either read into a field, known to the engine but without effect on memory
(named in the answer's notes), or refused naming it. Flags follow each engine's own parser: vLLM
engine/arg_utils.py (0.19), SGLang server_args.py (0.5), llama.cpp common/arg.cpp.
"""

from __future__ import annotations

import json
import re
import shlex

from ..errors import InputError

MAX_COMMAND_CHARS = 8000
MAX_TOKENS_IN_COMMAND = 400
FIELD = "from_command"


def _flag_table(*rows) -> dict:
    """flag -> (serving field, kind) from rows of (field, kind, flag, its aliases ...)."""
    return {flag: (field, kind) for field, kind, *flags in rows for flag in flags}


# flag -> (serving field, kind); kind "int", "float", "str", "bool" (no value), "nobool" (sets False)
VLLM_FLAGS = _flag_table(
    ("tensor_parallel_size", "int", "--tensor-parallel-size", "-tp"),
    ("pipeline_parallel_size", "int", "--pipeline-parallel-size", "-pp"),
    ("data_parallel_size", "int", "--data-parallel-size", "-dp"),
    ("max_model_len", "int", "--max-model-len"), ("gpu_memory_utilization", "float", "--gpu-memory-utilization"),
    ("max_num_batched_tokens", "int", "--max-num-batched-tokens"), ("max_num_seqs", "int", "--max-num-seqs"),
    ("block_size", "int", "--block-size"), ("enable_expert_parallel", "bool", "--enable-expert-parallel"),
    ("enforce_eager", "bool", "--enforce-eager"),
    ("kv_cache_memory_bytes", "int", "--kv-cache-memory-bytes", "--kv-cache-memory"),
    ("kv_cache_dtype", "str", "--kv-cache-dtype"), ("dtype", "str", "--dtype"),
    ("quantization", "str", "--quantization", "-q"),
    ("enable_prefix_caching", "bool", "--enable-prefix-caching"),
    ("enable_prefix_caching", "nobool", "--no-enable-prefix-caching"),
    ("disable_hybrid_kv_cache_manager", "bool", "--disable-hybrid-kv-cache-manager"),
    ("enable_extensible_kv_cache", "bool", "--enable-extensible-kv-cache"),
    ("enable_extensible_kv_cache", "nobool", "--no-enable-extensible-kv-cache"),
    ("runner", "str", "--runner"),
)
# vLLM flags that do not change the memory budget (value-taking, then switches).
VLLM_OTHER = {"--host", "--port", "--served-model-name", "--api-key", "--tokenizer", "--revision", "--download-dir",
              "--tool-call-parser", "--reasoning-parser", "--chat-template", "--seed", "--uvicorn-log-level",
              "--generation-config", "--load-format", "--distributed-executor-backend", "--swap-space",
              "--limit-mm-per-prompt", "--hf-overrides", "--override-generation-config"}
VLLM_SWITCHES = {"--trust-remote-code", "--enable-auto-tool-choice", "--disable-log-requests", "--disable-log-stats",
                 "--enable-chunked-prefill", "--no-enable-chunked-prefill", "--disable-custom-all-reduce"}

SGLANG_FLAGS = _flag_table(
    ("tp_size", "int", "--tp-size", "--tp"), ("pp_size", "int", "--pp-size"),
    ("mem_fraction_static", "float", "--mem-fraction-static"), ("context_length", "int", "--context-length"),
    ("max_running_requests", "int", "--max-running-requests"), ("max_total_tokens", "int", "--max-total-tokens"),
    ("chunked_prefill_size", "int", "--chunked-prefill-size"), ("cuda_graph_max_bs", "int", "--cuda-graph-max-bs"),
    ("page_size", "int", "--page-size"), ("kv_cache_dtype", "str", "--kv-cache-dtype"), ("dtype", "str", "--dtype"),
    ("quantization", "str", "--quantization"), ("swa_full_tokens_ratio", "float", "--swa-full-tokens-ratio"),
    ("draft_model", "str", "--speculative-draft-model-path"),
    ("num_speculative_tokens", "int", "--speculative-num-draft-tokens"),
)
SGLANG_OTHER = {"--host", "--port", "--served-model-name", "--api-key", "--tokenizer-path", "--log-level",
                "--revision", "--chat-template", "--tool-call-parser", "--reasoning-parser", "--random-seed",
                "--attention-backend", "--download-dir", "--load-format"}
SGLANG_SWITCHES = {"--trust-remote-code", "--enable-metrics", "--disable-radix-cache", "--enable-torch-compile",
                   "--disable-cuda-graph"}

LLAMA_FLAGS = _flag_table(
    ("n_ctx", "int", "-c", "--ctx-size"), ("n_gpu_layers", "int", "-ngl", "--n-gpu-layers", "--gpu-layers"),
    ("n_batch", "int", "-b", "--batch-size"), ("n_ubatch", "int", "-ub", "--ubatch-size"),
    ("cache_type_k", "str", "-ctk", "--cache-type-k"), ("cache_type_v", "str", "-ctv", "--cache-type-v"),
    ("n_parallel", "int", "-np", "--parallel"), ("kv_unified", "bool", "-kvu", "--kv-unified"),
    ("kv_unified", "nobool", "--no-kv-unified"), ("swa_full", "bool", "--swa-full"),
    ("n_cpu_moe", "int", "--n-cpu-moe", "-ncmoe"), ("draft_model", "str", "--model-draft", "-md"),
    ("n_gpu_layers_draft", "int", "--gpu-layers-draft", "-ngld", "--n-gpu-layers-draft"),
    ("n_ctx_draft", "int", "-cd", "--ctx-size-draft"),
    ("num_speculative_tokens", "int", "--draft-max", "--draft", "--draft-n"),
)
LLAMA_OTHER = {"--host", "--port", "-t", "--threads", "-a", "--alias", "--temp", "--api-key", "--chat-template",
               "-n", "--n-predict", "--seed", "-s", "--top-k", "--top-p", "--min-p", "-sm", "--split-mode",
               "--log-file", "--mmproj"}
LLAMA_SWITCHES = {"--jinja", "--mlock", "--no-mmap", "--cont-batching", "--metrics", "--no-webui", "-v", "--verbose"}
LLAMA_BINARIES = ("llama-server", "llama-cli", "server", "main")
GGUF_QUANT = re.compile(r"[-._](I?Q\d_[A-Z0-9_]+|Q\d_\d|F16|BF16|F32|MXFP4)$", re.IGNORECASE)


def _tokens(text) -> list[str]:
    if not isinstance(text, str) or not text.strip():
        raise InputError(FIELD, "give the engine's command line, e.g. \"vllm serve MODEL --max-model-len 8192\"")
    if len(text) > MAX_COMMAND_CHARS:
        raise InputError(FIELD, f"the command is longer than {MAX_COMMAND_CHARS} characters")
    text = text.replace("\\\n", " ")
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise InputError(FIELD, f"the command does not split into words: {exc}") from None
    if len(tokens) > MAX_TOKENS_IN_COMMAND:
        raise InputError(FIELD, f"the command has more than {MAX_TOKENS_IN_COMMAND} words")
    while tokens and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", tokens[0]):      # VAR=value prefixes
        tokens.pop(0)
    return tokens


def _engine(tokens: list[str]) -> tuple[str, list[str]]:
    """(engine, the words after the program) of a command."""
    if not tokens:
        raise InputError(FIELD, "the command is empty")
    prog = tokens[0].rsplit("/", 1)[-1]
    if prog == "vllm" and len(tokens) > 1 and tokens[1] == "serve":
        return "vllm", tokens[2:]
    if re.fullmatch(r"python[0-9.]*", prog) and len(tokens) > 2 and tokens[1] == "-m":
        if tokens[2] in ("vllm.entrypoints.openai.api_server", "vllm.entrypoints.api_server"):
            return "vllm", tokens[3:]
        if tokens[2] in ("sglang.launch_server",):
            return "sglang", tokens[3:]
    if prog == "sglang" and len(tokens) > 1 and tokens[1] == "serve":
        return "sglang", tokens[2:]
    if prog in LLAMA_BINARIES:
        return "llamacpp", tokens[1:]
    raise InputError(FIELD, f"not a command this planner reads: {tokens[0][:40]!r} (give vllm serve ..., python -m "
                            "sglang.launch_server ... or llama-server ...)")


def _value(flag: str, kind: str, text: str):
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise InputError(FIELD, f"{flag} takes a {'whole number' if kind == 'int' else 'number'}, "
                                f"got {text[:30]!r}") from None
    return text


# Flags whose value is read by a rule of its own (speculative decoding and pooling, issue 24): vLLM's
# --speculative-config JSON (engine/arg_utils.py 0.19: model, method, num_speculative_tokens), --task
# (embed, classify, score, reward: a pooling runner), --convert; SGLang's --speculative-algorithm.
SPECIAL_FLAGS = {"vllm": ("--speculative-config", "--task", "--convert"), "sglang": ("--speculative-algorithm",)}
POOLING_TASKS = ("embed", "embedding", "classify", "score", "reward")
MODEL_FREE_METHODS = ("ngram", "ngram_gpu", "suffix")
SPEC_CONFIG_KEYS = {"model": "draft_model", "num_speculative_tokens": "num_speculative_tokens",
                    "method": "speculative_method"}


def _special(engine: str, flag: str, value: str) -> dict:
    import json
    from .speculative import SGLANG_ALGORITHMS
    if flag == "--speculative-algorithm":
        if value.upper() not in SGLANG_ALGORITHMS:
            raise InputError(FIELD, f"--speculative-algorithm {value[:20]!r} is not modelled (give "
                                    f"{', '.join(SGLANG_ALGORITHMS)})")
        return {"speculative_method": SGLANG_ALGORITHMS[value.upper()]}
    if flag in ("--task", "--convert"):
        if value in POOLING_TASKS:
            return {"runner": "pooling"}
        if value in ("generate", "auto", "none"):
            return {}
        raise InputError(FIELD, f"{flag} {value[:20]!r} is not modelled")
    try:
        config = json.loads(value)
    except ValueError:
        raise InputError(FIELD, "--speculative-config takes a JSON object, e.g. "
                                "'{\"model\": \"meta-llama/Llama-3.2-1B\", \"num_speculative_tokens\": 5}'") from None
    if not isinstance(config, dict):
        raise InputError(FIELD, "--speculative-config takes a JSON object")
    if config.get("method") in MODEL_FREE_METHODS:
        return {}                          # n-gram and suffix drafting hold no drafter on the GPU
    out = {}
    for key, val in config.items():
        if key not in SPEC_CONFIG_KEYS:
            continue                       # other keys (draft_tensor_parallel_size, ...) are not modelled
        if key == "model":
            val = model_id_from(str(val), "vllm")[0]
        if key == "method":
            val = "mtp" if str(val).endswith("mtp") else val
        out[SPEC_CONFIG_KEYS[key]] = val
    return out


def _flags(engine: str, words: list[str]) -> tuple[dict, list[str], list[str], str | None]:
    """(fields, positional words, flags without effect on memory, llama.cpp flash-attn value)."""
    table, other, switches = {"vllm": (VLLM_FLAGS, VLLM_OTHER, VLLM_SWITCHES), "sglang": (SGLANG_FLAGS, SGLANG_OTHER,
                              SGLANG_SWITCHES), "llamacpp": (LLAMA_FLAGS, LLAMA_OTHER, LLAMA_SWITCHES)}[engine]
    model_flags = {"vllm": ("--model",), "sglang": ("--model-path", "--model"), "llamacpp": ("-m", "--model")}[engine]
    fields, positional, ignored, unknown = {}, [], [], []
    flash, devices = None, None
    i = 0
    while i < len(words):
        word = words[i]
        flag, eq, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        takes = flag in model_flags or flag in other or flag in SPECIAL_FLAGS.get(engine, ()) or (
            flag in table and table[flag][1] not in ("bool", "nobool"))
        if engine == "llamacpp" and flag in ("-fa", "--flash-attn"):
            takes = bool(eq) or (i + 1 < len(words) and words[i + 1] in ("on", "off", "auto"))
        if engine == "llamacpp" and flag in ("-ts", "--tensor-split", "-dev", "--device"):
            takes = True
        value = inline if eq else None
        if takes and not eq:
            if i + 1 >= len(words):
                raise InputError(FIELD, f"{flag} needs a value (the command ends after it)")
            value = words[i + 1]
            i += 1
        i += 1
        if not word.startswith("-"):
            positional.append(word)
        elif flag in model_flags:
            positional.insert(0, value)
        elif engine == "llamacpp" and flag in ("-fa", "--flash-attn"):
            flash = value or "on"
        elif engine == "llamacpp" and flag in ("-ts", "--tensor-split", "-dev", "--device"):
            devices = len([x for x in re.split(r"[,/]", value) if x.strip()])
        elif flag in SPECIAL_FLAGS.get(engine, ()):
            fields.update(_special(engine, flag, value))
        elif flag in table:
            name, kind = table[flag]
            fields[name] = True if kind == "bool" else False if kind == "nobool" else _value(flag, kind, value)
        elif flag in other or flag in switches:
            ignored.append(flag)
        else:
            unknown.append(flag)
    if unknown:
        raise InputError(FIELD, f"{engine} has no flag {', '.join(sorted(set(unknown)))[:200]} (or the planner does "
                                "not know it); remove it or check its spelling")
    if devices:
        fields["devices"] = devices
    return fields, positional, ignored, flash


# Hub-id suffixes that name the checkpoint's weight format (its config.json's quantization_config):
# Qwen's "-FP8" checkpoints are 128x128 block-scaled, others (Red Hat / Neural Magic "-FP8-dynamic")
# per-channel; AWQ and GPTQ checkpoints say so in the name.
NAME_FORMATS = (("-fp8-dynamic", "fp8"), ("-fp8", "fp8"), ("-awq", "awq"), ("-gptq-int4", "gptq"), ("-gptq", "gptq"))


def format_from_name(text: str) -> str | None:
    """The weight format a Hub id's name states, or None."""
    low = text.rstrip("/").rsplit("/", 1)[-1].lower()
    for suffix, fmt in NAME_FORMATS:
        if low.endswith(suffix) or f"{suffix}-" in low:
            return "fp8-block" if fmt == "fp8" and low.startswith("qwen") and "dynamic" not in low else fmt
    return None


def model_id_from(text: str, engine: str) -> tuple[str, str | None]:
    """(catalog id, GGUF file type) for a Hub id, a path or a .gguf file name; the id may be unknown."""
    from ..data.catalog import model_entries
    name = text.rstrip("/").rsplit("/", 1)[-1]
    quant = None
    if engine == "llamacpp" and name.lower().endswith(".gguf"):
        name = re.sub(r"-\d{5}-of-\d{5}$", "", name[:-5])
        m = GGUF_QUANT.search(name)
        if m:
            quant, name = m.group(1).upper(), name[:m.start()]
            quant = "MXFP4_MOE" if quant == "MXFP4" else quant
    low = name.lower()
    entries = model_entries()
    candidates = [low]
    for suffix in ("-fp8-dynamic", "-fp8", "-awq", "-gptq-int4", "-gptq", "-2507", "-instruct", "-thinking", "-chat",
                   "-it", "-hf", "-base", "-gguf"):
        candidates += [c[: -len(suffix)] for c in candidates if c.endswith(suffix)]
    candidates += [c.replace("meta-llama-", "llama-").replace("meta-", "") for c in candidates]
    for c in candidates:
        if c in entries:
            return c, quant
    return low, quant


def read_command(text, model_given: bool = False) -> dict:
    """The serving request a launch command stands for: {"model": id, "workload": {...}, "notes": [...]}.
    A model that is not in the catalog is an error asking for its config.json (--hf-config), unless
    ``model_given`` (the caller has the config)."""
    from ..data.catalog import model_entries
    tokens = _tokens(text)
    engine, words = _engine(tokens)
    fields, positional, ignored, flash = _flags(engine, words)
    if not positional:
        raise InputError(FIELD, f"the command names no model ({'-m FILE' if engine == 'llamacpp' else 'MODEL'})")
    model, quant = model_id_from(positional[0], engine)
    if len(positional) > 1:
        raise InputError(FIELD, f"unexpected word {positional[1][:40]!r} after the model")
    if model not in model_entries() and not model_given:
        raise InputError(FIELD, f"{positional[0][:80]!r} is not in the model catalog (a Hub id or file the planner "
                                "does not know); give its config.json with --hf-config FILE")
    head_notes = []
    if fields.get("speculative_method") in ("eagle", "eagle3", "mtp") and "draft_model" in fields:
        fields.pop("draft_model")                   # the head is sized from the target's own layers
        head_notes.append(f"the {fields['speculative_method']} head's path is not read: the head is sized "
                          "from the target's layers")
    if "draft_model" in fields:                     # a Hub id, path or .gguf file, as the model is read
        fields["draft_model"], draft_quant = model_id_from(fields["draft_model"], engine)
        if draft_quant:
            fields["quant_draft"] = draft_quant
    workload = {"mode": "serve", "engine": engine, **fields}
    named = format_from_name(positional[0]) if engine != "llamacpp" else None
    if named and "quantization" not in workload:
        workload["quantization"] = named
    if quant:
        workload["quant"] = quant
    if flash:
        workload["flash_attn"] = flash
    notes = [f"{flag} does not change the memory budget; not modelled" for flag in ignored] + head_notes
    return {"model": model, "workload": workload, "notes": notes}


# ---- writing the command ----------------------------------------------------------------------------

def _flag_for(table: dict, field: str) -> str:
    return next(f for f, (name, kind) in table.items() if name == field and f.startswith("--") and kind != "nobool")


def launch_command(engine: str, model: str, settings: dict, workload: dict) -> str:
    """The command that starts ``engine`` with the settings the answer assumed: the engine's defaults it
    picked (settings) and what the request gave (workload)."""
    given = {k: v for k, v in workload.items() if v not in (None, False) and k not in ("mode", "engine", "version")}
    if engine == "vllm":
        out = {"tensor_parallel_size": given.get("tensor_parallel_size", 1),
               "pipeline_parallel_size": given.get("pipeline_parallel_size", 1),
               "data_parallel_size": given.get("data_parallel_size", 1),
               "max_model_len": settings.get("max_model_len"),
               "gpu_memory_utilization": settings.get("gpu_memory_utilization"),
               "max_num_batched_tokens": settings.get("max_num_batched_tokens"),
               "max_num_seqs": settings.get("max_num_seqs")}
        for key in ("kv_cache_memory_bytes", "kv_cache_dtype", "dtype", "quantization", "block_size",
                    "enable_expert_parallel", "enforce_eager", "disable_hybrid_kv_cache_manager"):
            if key in given and given[key] != "auto":
                out[key] = given[key]
        parts = ["vllm", "serve", model] + _write(VLLM_FLAGS, out, {"tensor_parallel_size": 1,
                                                                     "pipeline_parallel_size": 1, "data_parallel_size": 1})
        if workload.get("enable_prefix_caching") is not None:
            parts.append("--enable-prefix-caching" if workload["enable_prefix_caching"] else "--no-enable-prefix-caching")
        if workload.get("enable_extensible_kv_cache") is not None:
            parts.append("--enable-extensible-kv-cache" if workload["enable_extensible_kv_cache"]
                         else "--no-enable-extensible-kv-cache")
        if workload.get("runner") == "pooling":
            parts += ["--runner", "pooling"]
        spec = {k: workload.get(f) for k, f in SPEC_CONFIG_KEYS.items() if workload.get(f) is not None}
        if spec:
            parts += ["--speculative-config", json.dumps(spec)]
    elif engine == "sglang":
        out = {"tp_size": given.get("tp_size", 1), "pp_size": given.get("pp_size", 1),
               "mem_fraction_static": settings.get("mem_fraction_static"),
               "context_length": settings.get("context_length"),
               "max_running_requests": settings.get("max_running_requests"),
               "chunked_prefill_size": settings.get("chunked_prefill_size")}
        defaults = {"page_size": 1, "kv_cache_dtype": "auto", "dtype": "auto"}
        for key in ("max_total_tokens", "cuda_graph_max_bs", "page_size", "kv_cache_dtype", "dtype", "quantization"):
            if key in given and given[key] != defaults.get(key):
                out[key] = given[key]
        parts = ["python", "-m", "sglang.launch_server", "--model-path", model] + \
            _write(SGLANG_FLAGS, out, {"tp_size": 1, "pp_size": 1})
        if workload.get("speculative_method") or workload.get("draft_model"):
            from .speculative import SGLANG_ALGORITHMS
            names = {v: k for k, v in SGLANG_ALGORITHMS.items()}
            parts += ["--speculative-algorithm", names[workload.get("speculative_method") or "draft_model"]]
            parts += _write(SGLANG_FLAGS, {"draft_model": workload.get("draft_model"),
                                           "num_speculative_tokens": workload.get("num_speculative_tokens")}, {})
    else:
        out = {"n_ctx": settings.get("n_ctx"), "n_gpu_layers": settings.get("n_gpu_layers"),
               "n_batch": given.get("n_batch"), "n_ubatch": given.get("n_ubatch"),
               "cache_type_k": given.get("cache_type_k"), "cache_type_v": given.get("cache_type_v"),
               "n_parallel": given.get("n_parallel"), "n_cpu_moe": given.get("n_cpu_moe")}
        parts = ["llama-server", "-m", f"{model}-{settings.get('quant', workload.get('quant', 'Q4_K_M'))}.gguf"] + \
            _write(LLAMA_FLAGS, out, {"n_batch": 2048, "n_ubatch": 512, "cache_type_k": "f16", "cache_type_v": "f16",
                                      "n_parallel": 1, "n_cpu_moe": 0})
        if workload.get("flash_attn") and workload["flash_attn"] != "auto":
            parts += ["--flash-attn", workload["flash_attn"]]
        if workload.get("kv_unified") is False:
            parts.append("--no-kv-unified")
        if workload.get("swa_full"):
            parts.append("--swa-full")
        if workload.get("devices", 1) > 1:
            parts += ["--tensor-split", ",".join(["1"] * workload["devices"])]
        if workload.get("draft_model"):
            draft_quant = workload.get("quant_draft") or settings.get("quant", workload.get("quant", "Q4_K_M"))
            parts += ["--model-draft", f"{workload['draft_model']}-{draft_quant}.gguf"] + _write(LLAMA_FLAGS, {
                "n_gpu_layers_draft": workload.get("n_gpu_layers_draft"), "n_ctx_draft": workload.get("n_ctx_draft"),
                "num_speculative_tokens": workload.get("num_speculative_tokens")}, {})
    return " ".join(shlex.quote(str(p)) for p in parts)


def _write(table: dict, values: dict, defaults: dict) -> list[str]:
    parts = []
    for field, value in values.items():
        if value is None or defaults.get(field) == value:
            continue
        flag = _flag_for(table, field)
        if value is True:
            parts.append(flag)
        else:
            parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return parts


ENGINE_NAMES = {"vllm": "vLLM", "sglang": "SGLang", "llamacpp": "llama.cpp"}


def version_note(s) -> str:
    """Which engine version the answer assumed, and whether the user gave it."""
    from .config import DEFAULT_VERSIONS
    name = ENGINE_NAMES.get(s.engine, s.engine)
    if s.version:
        return f"{name} {s.version} (as given)"
    return (f"{name} {DEFAULT_VERSIONS[s.engine]} assumed: no version was given, so the newest release whose source "
            "the rules were read from")
