"""``--from FILE``: a training config the user already has (axolotl, LLaMA-Factory, torchtune, DeepSpeed,
accelerate) fills in the flags the command line did not give; ``--print-command`` prints the arguments
that run the answer (pycore/commands)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .args import printable, read_text_file

_MODEL_DESTS = ("model", "hf_config", "params")


def add_from_args(p) -> None:
    g = p.add_argument_group("from a config file you already have")
    g.add_argument("--from", dest="from_file", metavar="FILE", default=None,
                   help="an axolotl, LLaMA-Factory or torchtune YAML, a DeepSpeed JSON or an accelerate config; "
                        "flags given as well override it")
    g.add_argument("--from-kind", default=None, help="axolotl, llamafactory, torchtune, deepspeed or accelerate "
                                                     "(default: told from the file's fields)")
    g.add_argument("--print-command", action="store_true",
                   help="print the arguments that run this configuration (TrainingArguments, DeepSpeed and "
                        "accelerate configs)")


def explicit_dests(parser: argparse.ArgumentParser, argv) -> set:
    """The dests the user gave on the command line (parsed again with every default suppressed)."""
    for action in parser._actions:                                     # noqa: SLF001 - argparse has no API
        if isinstance(action, argparse._SubParsersAction):             # noqa: SLF001
            for sub in action.choices.values():
                for a in sub._actions:                                 # noqa: SLF001
                    if a.dest != "help":
                        a.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def apply_from(a, given: set) -> tuple[dict | None, str | None]:
    """Fill ``a`` from the file's request where the flag was not given; returns the reading (fields used,
    ignored, notes) or an error message."""
    from ..errors import InputError
    from ..runconfig import read_run_config
    text, problem = read_text_file(a.from_file, "--from")
    if problem:
        return None, problem
    versions = {path.split(".", 1)[1]: getattr(a, path) for path in ("framework.torch", "framework.transformers")
                if path in given and hasattr(a, path)}
    try:
        first = read_run_config(text, a.from_kind, framework=versions)
        ds_text = _deepspeed_text(first, a.from_file)
        reading = read_run_config(text, a.from_kind, ds_text, versions) if ds_text is not None else first
    except InputError as exc:
        return None, printable(f"--from {a.from_file}: {exc.message}")
    from ..request.parse import cli_flags
    model_given = any(d in given for d in _MODEL_DESTS)
    dests = {"model": "model", **{path: path for path in cli_flags() if hasattr(a, path)}}   # add_field_args' dests
    for path, value in _flatten(reading["request"]):
        dest = dests.get(path)
        if dest is None:
            if path.startswith("parallelism.options.") and "option" not in given:
                a.option.append(f"{path.rsplit('.', 1)[1]}={json.dumps(value)}")
            continue
        if dest in given or (dest == "model" and model_given):
            continue
        setattr(a, dest, value)
    if not model_given and "model" not in reading["request"]:
        why = next((n for n in reading["notes"] if "--model" in n), f"a {reading['kind']} config names no model")
        return None, printable(f"--from {a.from_file}: {why}")
    return reading, None


def _deepspeed_text(reading: dict, config_path: str) -> str | None:
    """The DeepSpeed JSON a training config names by path: as the tool finds it (from the working
    directory), else beside the config file."""
    path = reading.get("deepspeed_file")
    if not path:
        return None
    for candidate in (path, os.path.join(os.path.dirname(config_path), path),
                      os.path.join(os.path.dirname(config_path), os.path.basename(path))):
        if os.path.isfile(candidate):
            text, problem = read_text_file(candidate, "deepspeed")
            if not problem:
                return text
    reading["notes"].append(f"deepspeed: {path} was not found here; its ZeRO settings are not applied "
                            "(give it with --from, or the layout flags)")
    return None


def _flatten(d: dict, prefix: str = ""):
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path != "model":
            yield from _flatten(value, path + ".")
        else:
            yield path, value


def print_reading(reading: dict, path: str, out=sys.stdout) -> None:
    print(printable(f"read {path} as {reading['kind']}:"), file=out)
    for u in reading["used"]:
        print(printable(f"  used     {u['field']} -> {u['sets']} = {json.dumps(u['value'])}"), file=out)
    if reading["read_only"]:
        print(printable("  read     " + ", ".join(reading["read_only"]) + " (nothing to set: auto or a default)"),
              file=out)
    if reading["ignored"]:
        print(printable("  ignored  " + ", ".join(reading["ignored"])), file=out)
    for note in reading["notes"]:
        print(printable(f"  note     {note}"), file=out)
    print(file=out)


def print_command(res: dict) -> int:
    from ..commands.hf import hf_script
    run = res.get("run_arguments")
    if not run:
        print("error: --print-command: no Hugging Face arguments for this layout (tensor, pipeline, context or "
              "expert parallel runs are launched by Megatron or torchtitan)", file=sys.stderr)
        return 2
    print(hf_script(run))
    return 0
