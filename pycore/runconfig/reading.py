"""One config file being read: which of its fields set which request field, and which were ignored."""

from __future__ import annotations

import re

from ..errors import InputError
from ..data.catalog import model_entries

_MISSING = object()

# Hugging Face TrainingArguments.optim (transformers/training_args.py OptimizerNames, 5.x), axolotl's
# `optimizer` and LLaMA-Factory's `optim` (both passed to TrainingArguments) -> workload.optimizer.
# Names not here are not modelled; the reading says so instead of guessing.
HF_OPTIMIZERS = {"adamw_torch": "adamw", "adamw_hf": "adamw", "adamw_torch_fused": "adamw_fused",
                 "adafactor": "adafactor_hf", "adamw_bnb_8bit": "adamw_8bit", "adamw_8bit": "adamw_8bit",
                 "paged_adamw_8bit": "paged_adamw_8bit", "lion_32bit": "lion", "sgd": "sgd"}
# transformers' TrainingArguments picks fused AdamW by default only with this torch or later
# (pytorch_utils.is_torch_greater_or_equal_than_2_8; rule trainer-default-adamw-fused).
TORCH_FUSED_DEFAULT = (2, 8, 0)
# Hub names often carry a suffix that the catalog id leaves out (casperhansen/llama-3-70b-fp16).
# An -Instruct or -chat model has its base model's architecture, so the same memory.
_HUB_SUFFIXES = ("-hf", "-fp16", "-bf16", "-base", "-instruct", "-chat", "-it")


def catalog_id_for(name) -> str | None:
    """The catalog id of a Hub model id or local path (meta-llama/Llama-3.1-8B -> llama-3.1-8b), or None."""
    if not isinstance(name, str) or not name.strip():
        return None
    base = name.strip().rstrip("/").split("/")[-1].lower()
    entries = model_entries()
    candidates = [base, base.replace("meta-llama-3.1", "llama-3.1"), base.replace("meta-", "", 1)]
    for suffix in _HUB_SUFFIXES:
        if base.endswith(suffix):
            candidates.append(base[:-len(suffix)])
            candidates.append(base[:-len(suffix)].replace("llama-3-", "meta-llama-3-"))
    for c in candidates:
        if c in entries:
            return c
    return None


class Reading:
    """A parsed config (``data``) and the request it makes; every field used is recorded with the
    request field it set, every other field is named as ignored."""

    def __init__(self, kind: str, data: dict, framework: dict | None = None):
        if not isinstance(data, dict):
            raise InputError("from", f"a {kind} config is a mapping of settings")
        self.kind = kind
        self.data = data
        self.framework = dict(framework or {})     # versions given beside the file (--torch-version, ...)
        self.request: dict = {}
        self.used: list = []          # {"field", "sets", "value"}
        self.read: set = set()        # source paths looked at and consumed (used, or read and not needed)
        self.notes: list = []
        self.deepspeed_file: str | None = None     # a DeepSpeed JSON the config names by path

    def get(self, path: str, default=None):
        node = self.data
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def has(self, path: str) -> bool:
        return self.get(path, _MISSING) is not _MISSING

    def use(self, source: str, target: str, value) -> None:
        """Record that ``source`` sets request field ``target`` (dotted) to ``value``."""
        node = self.request
        parts = target.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        self.read.add(source)
        self.used.append({"field": source, "sets": target, "value": value})

    def consumed(self, source: str) -> None:
        """``source`` was read but set nothing on its own (an 'auto' value, a default)."""
        self.read.add(source)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def ignored(self) -> list:
        """Every field of the file that set nothing: a mapping none of whose fields were read is named
        once, otherwise its unread fields are named one by one."""
        out = []

        def walk(node, prefix):
            for key, value in node.items():
                path = f"{prefix}{key}"
                if path in self.read:
                    continue
                if isinstance(value, dict) and any(r.startswith(path + ".") for r in self.read):
                    walk(value, path + ".")
                else:
                    out.append(path)
        walk(self.data, "")
        return out

    def result(self) -> dict:
        used = {u["field"] for u in self.used}
        read_only = [f for f in sorted(self.read) if f not in used and self.has(f)]
        return {"kind": self.kind, "request": self.request, "used": self.used, "read_only": read_only,
                "ignored": self.ignored(), "notes": self.notes, "deepspeed_file": self.deepspeed_file}

    # -- shared readings -------------------------------------------------------------------------
    def model(self, source: str) -> None:
        self.looked_up(source, "model", catalog_id_for,
                       "{source}: {name!s:.80} is not in the model catalog; give --model ID or --hf-config "
                       "config.json (its config.json from the Hub)")

    def hf_optimizer(self, source: str, tool_default: tuple = ()) -> None:
        """``source`` names a TrainingArguments optimizer. Unset: the tool's own default (name, where it is
        set), else TrainingArguments' default at the request's versions."""
        if self.get(source) is None:
            if not tool_default:
                self.trainer_default_optimizer(source)
                return
            name, where = tool_default
            self.request.setdefault("workload", {})["optimizer"] = HF_OPTIMIZERS[name]
            self.note(f"{source} unset: {name}, the default of {where}")
            return
        self.looked_up(source, "workload.optimizer", lambda name: HF_OPTIMIZERS.get(str(name)),
                       "{source}: {name!s:.60} is not modelled; the estimate uses AdamW (give --optimizer to "
                       "choose one of the modelled optimizers)")

    def trainer_default_optimizer(self, source: str) -> None:
        """``source`` unset: TrainingArguments' own default at the versions the request assumes (rule
        trainer-default-adamw-fused: fused AdamW from transformers 4.54 with torch 2.8)."""
        from ..training.workload import Framework
        from ..versions import holds, version_tuple
        fw = {**vars(Framework()), **self.framework, **self.request.get("framework", {})}
        tf = version_tuple(str(fw["transformers"]), "framework.transformers", "a transformers version", "5.17")
        torch = version_tuple(str(fw["torch"]), "framework.torch", "a torch version", "2.11")
        fused = holds("trainer-default-adamw-fused", tf) and torch >= TORCH_FUSED_DEFAULT
        self.request.setdefault("workload", {})["optimizer"] = "adamw_fused" if fused else "adamw"
        self.note(f"{source} unset: TrainingArguments' default at transformers {fw['transformers']} and torch "
                  f"{fw['torch']}, " + ("adamw_torch_fused (fused AdamW, from transformers 4.54 with torch 2.8)"
                                        if fused else "adamw_torch (foreach AdamW)"))

    def looked_up(self, source: str, target: str, lookup, unknown: str) -> None:
        """The value ``lookup`` finds for the setting; else the setting is consumed with the note ``unknown``
        (formatted with the source and the setting's value as ``name``)."""
        name = self.get(source)
        if name is None:
            return
        value = lookup(name)
        if value:
            self.use(source, target, value)
        else:
            self.consumed(source)
            self.note(unknown.format(source=source, name=name))

    def integer(self, source: str, target: str) -> None:
        value = self.get(source)
        if value is None:
            return
        number = as_int(value)
        if number is None:
            self.consumed(source)
            if value != "auto":
                self.note(f"{source}: {value!s:.40} is not a whole number; not used")
            return
        self.use(source, target, number)

    def flag(self, source: str, target: str, invert: bool = False) -> None:
        value = self.get(source)
        if isinstance(value, bool):
            self.use(source, target, value != invert)


def as_int(value):
    """A whole number from a config value: 4, 4.0, "4", "5e8" (YAML 1.1 reads 5e8 as text); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[0-9]+(?:\.0*)?(?:[eE]\+?[0-9]+)?", value.strip()):
        number = float(value)
        return int(number) if number.is_integer() and number < 1e18 else None
    return None
