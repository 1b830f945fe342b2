"""Read what a user's own run printed: ``torch.cuda.memory_summary()``, the numbers of
``torch.cuda.max_memory_allocated()`` / ``max_memory_reserved()``, and ``nvidia-smi``.

The text is untrusted (pasted into the page, or a file given to the CLI): it is bounded in length
and in lines before anything reads it, each line is cut to a fixed width, and every pattern is a
linear scan (no nested repetition), so no input can make the parser slow.

Formats, as their sources print them:

- ``torch.cuda.memory_summary()`` (torch/cuda/memory.py, ``memory_summary``; the same layout from
  torch 1.4 to 2.11): rows ``| Allocated memory | <cur> | <peak> | <tot alloc> | <tot freed> |``
  where each size is ``_format_size``: an integer floored to the largest unit (B, KiB, MiB, GiB,
  TiB) that leaves at least 768 of it, so a peak of 23.4 GiB prints as ``23961 MiB``. The reserved
  row is "GPU reserved memory" (CUDA), "Cached memory" before torch 1.4. The header says
  ``CUDA OOMs: <n>`` from torch 1.7.
- ``max_memory_allocated()`` / ``max_memory_reserved()`` return integer bytes; people print them
  as they are or divided into a unit, so a number is read with its unit, and a fraction without
  one is refused (it cannot be told apart).
- ``nvidia-smi``: the table's memory column ``<used>MiB / <total>MiB`` per GPU (MiB = 2**20), or
  ``--query-gpu=memory.used,memory.total --format=csv[,nounits]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import InputError
from ..units import GB, GiB, MiB

# A memory_summary is about 3 KB; nvidia-smi for 8 GPUs about 4 KB. A log excerpt around them fits.
MAX_TEXT_CHARS = 200_000
MAX_LINES = 5_000
MAX_LINE_CHARS = 400
MAX_BYTES = 2 ** 50             # 1 PiB: no GPU holds more

UNITS = {"b": 1, "bytes": 1, "byte": 1, "kib": 1024, "mib": MiB, "gib": GiB, "tib": 1024 * GiB,
         "kb": 1000, "mb": 10 ** 6, "gb": GB, "tb": 10 ** 12}
_UNIT_NAMES = {"b": "B", "bytes": "B", "byte": "B", "kib": "KiB", "mib": "MiB", "gib": "GiB", "tib": "TiB",
               "kb": "kB", "mb": "MB", "gb": "GB", "tb": "TB"}

_SUMMARY_HEADER = re.compile(r"memory summary, device id\s+(\d+)", re.I)
_OOMS = re.compile(r"cuda ooms:\s*(\d+)", re.I)
_RETRIES = re.compile(r"cudamalloc retries:\s*(\d+)", re.I)
_SIZE = re.compile(r"^\s*(\d{1,16})\s*(b|kib|mib|gib|tib|pib)\s*$", re.I)
# memory_summary row names -> our quantities
_SUMMARY_ROWS = {"allocated memory": "allocated", "gpu reserved memory": "reserved", "cached memory": "reserved",
                 "non-releasable memory": "non_releasable", "requested memory": "requested",
                 "active memory": "active"}
_TORCH_CALL = re.compile(r"(max_memory_allocated|max_memory_reserved|memory_allocated|memory_reserved"
                         r"|peak[ _-]?allocated|peak[ _-]?reserved|max[ _-]?allocated|max[ _-]?reserved)", re.I)
_NUMBER = re.compile(r"(?<![\w.])(\d{1,20}(?:[.,_]\d{1,20}){0,6})\s{0,3}([kmgt]i?b|bytes?|b)?(?![\w])", re.I)
# "21.3 GiB allocated, 22.9 GiB reserved": a size with its unit, then the word (how people summarise a run;
# read as the peaks, which is what such a line reports after a training step).
_SIZE_THEN_KIND = re.compile(r"(?<![\w.])(\d{1,20}(?:[.,]\d{1,20})?\s{0,3}[kmgt]i?b)\s{1,3}(?:of\s{1,3})?(?:peak\s{1,3})?"
                             r"(allocated|reserved)\b", re.I)
_SMI_USAGE = re.compile(r"(\d{1,9})\s?MiB\s{0,3}/\s{0,3}(\d{1,9})\s?MiB", re.I)
_SMI_CSV_HEADER = re.compile(r"memory\.used", re.I)
_SMI_CSV_ROW = re.compile(r"^\s*(\d{1,9})(\s?MiB)?\s*,\s*(\d{1,9})(\s?MiB)?\s*$", re.I)
_BARE_NUMBER = re.compile(r"^\s*\d[\d.,_]{0,40}\s*([kmgt]i?b|bytes?|b)?\s*$", re.I)
_CALL_ARGS = re.compile(r"^\s*\([^)]{0,80}\)")
_SMI_CSV_ONE = re.compile(r"^\s*(\d{1,9})(\s?MiB)?\s*$", re.I)


@dataclass(frozen=True)
class Reading:
    """One number read from the text, in bytes, with where it came from and how exact it is."""
    bytes: int
    source: str                 # e.g. "memory_summary: Allocated memory, Peak Usage (line 8)"
    resolution_bytes: int = 1   # the printed unit: the true value is in [bytes, bytes + resolution)


@dataclass(frozen=True)
class Measurement:
    peak_allocated: Reading | None = None
    peak_reserved: Reading | None = None
    current_allocated: Reading | None = None
    current_reserved: Reading | None = None
    peak_non_releasable: Reading | None = None
    device_used: tuple = ()              # nvidia-smi: (Reading, ...) one per GPU, in order
    device_total: Reading | None = None  # nvidia-smi's total of the first GPU
    cuda_ooms: int | None = None
    alloc_retries: int | None = None
    formats: tuple = ()                  # which outputs were recognised
    notes: tuple = field(default_factory=tuple)

    def empty(self) -> bool:
        return not (self.peak_allocated or self.peak_reserved or self.current_allocated or self.current_reserved
                    or self.device_used)


def _keep(found: dict, key: str, reading: Reading) -> None:
    """The first reading of a quantity, unless a later one is printed more exactly (the bytes of
    max_memory_allocated() beside the MiB of the summary)."""
    if key not in found or reading.resolution_bytes < found[key].resolution_bytes:
        found[key] = reading


def _size_cell(cell: str):
    m = _SIZE.match(cell)
    if not m:
        return None
    unit = m.group(2).lower()
    scale = {"b": 1, "kib": 1024, "mib": MiB, "gib": GiB, "tib": 1024 * GiB, "pib": 1024 ** 5}[unit]
    return int(m.group(1)) * scale, scale


def _number(text: str, where: str):
    """The first number of ``text`` with its unit, in bytes; a fraction needs a unit."""
    m = _NUMBER.search(text)
    if not m:
        return None
    digits, unit = m.group(1), (m.group(2) or "").lower()
    if "," in digits and "." not in digits and re.fullmatch(r"\d{1,3}(,\d{3})+", digits):
        digits = digits.replace(",", "")          # 21,474,836,480
    digits = digits.replace("_", "")
    if digits.count(".") + digits.count(",") > 1:
        raise InputError("measured.text", f"{where}: cannot read the number {m.group(1)!r}")
    digits = digits.replace(",", ".")
    if unit in ("", "b", "byte", "bytes"):
        if "." in digits:
            raise InputError("measured.text", f"{where}: {m.group(1)} has no unit; give bytes (an integer, as "
                                              "max_memory_allocated() returns) or a unit such as GiB, GB or MiB")
        value, scale = int(digits), 1
    else:
        scale = UNITS[unit]
        whole, _, frac = digits.partition(".")
        frac = frac[:9]
        value = (int(whole) * 10 ** len(frac) + (int(frac) if frac else 0)) * scale // 10 ** len(frac)
        # the printed precision: the last digit's worth of the unit
        scale = max(1, scale // 10 ** len(frac))
    if value > MAX_BYTES:
        raise InputError("measured.text", f"{where}: {m.group(1)} {unit or 'bytes'} is more than any GPU holds")
    return value, scale, _UNIT_NAMES.get(unit, "B")


def parse_measured_text(text) -> Measurement:
    """Every reading the text holds; raise InputError naming ``measured.text`` when it is too long or
    holds nothing this reads."""
    reader = _Reader()
    for number, raw in enumerate(_bounded_lines(text), 1):
        reader.read_line(raw[:MAX_LINE_CHARS], number)
    return reader.measurement()


def _bounded_lines(text) -> list[str]:
    """The text's lines, refused when it is not text or longer than a pasted output can be."""
    if not isinstance(text, str):
        raise InputError("measured.text", "must be text")
    if len(text) > MAX_TEXT_CHARS:
        raise InputError("measured.text", f"is longer than {MAX_TEXT_CHARS:,} characters; paste the memory summary "
                                          "or the nvidia-smi table only")
    lines = text.splitlines()
    if len(lines) > MAX_LINES:
        raise InputError("measured.text", f"has more than {MAX_LINES:,} lines; paste the memory summary or the "
                                          "nvidia-smi table only")
    return lines


def _add_format(formats: list, name: str) -> None:
    if name not in formats:
        formats.append(name)


class _Reader:
    """The readings so far, line by line: each reader of a format takes the line or leaves it to the next."""

    def __init__(self) -> None:
        self.found: dict = {}
        self.used: list = []
        self.formats: list = []
        self.notes: list = []
        self.ooms = self.retries = None
        self.in_summary = self.csv_smi = False
        self.summaries = 0
        self.pending = None         # a torch call whose value is printed on the next line (a REPL)

    def read_line(self, line: str, number: int) -> None:
        where = f"line {number}"
        if self._pending_value(line, number) or self._smi_table(line, where) or self._summary_header(line):
            return
        if self.in_summary and line.lstrip().startswith("|"):
            self._summary_row(line, where)
            return
        self.in_summary = False
        if self._smi_csv(line, where):
            return
        if not self._torch_calls(line, where):
            self._size_then_kind(line, where)

    def _pending_value(self, line: str, number: int) -> bool:
        """The value of the call on the line before, when this line is a bare number."""
        if self.pending is None:
            return False
        (key, label), self.pending = self.pending, None
        if not _BARE_NUMBER.match(line):
            return False
        got = _number(line, f"line {number}")
        if got:
            _keep(self.found, key, Reading(got[0], f"{label} (line {number}, read in {got[2]})", got[1]))
        return True

    def _smi_table(self, line: str, where: str) -> bool:
        m = _SMI_USAGE.search(line)
        if not m:
            return False
        self.used.append(Reading(int(m.group(1)) * MiB, f"nvidia-smi: GPU {len(self.used)} memory used ({where})", MiB))
        if "device_total" not in self.found:
            self.found["device_total"] = Reading(int(m.group(2)) * MiB, f"nvidia-smi: total ({where})", MiB)
        _add_format(self.formats, "nvidia-smi")
        return True

    def _summary_header(self, line: str) -> bool:
        if not _SUMMARY_HEADER.search(line):
            return False
        self.summaries += 1
        self.in_summary = self.summaries == 1
        if self.summaries == 2:
            self.notes.append("the text holds more than one memory summary; the first one is read")
        _add_format(self.formats, "torch.cuda.memory_summary()")
        return True

    def _summary_row(self, line: str, where: str) -> None:
        """A row of the first memory summary: its OOM and retry counts, or a size row's current and peak."""
        m = _OOMS.search(line)
        if m:
            self.ooms = int(m.group(1))
        m = _RETRIES.search(line)
        if m:
            self.retries = int(m.group(1))
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = cells[0].lower()
        if name in _SUMMARY_ROWS and len(cells) >= 3:
            current, peak = _size_cell(cells[1]), _size_cell(cells[2])
            key = _SUMMARY_ROWS[name]
            if peak:
                _keep(self.found, f"peak_{key}", Reading(peak[0], f"memory_summary: {cells[0]}, Peak Usage ({where})", peak[1]))
            if current:
                _keep(self.found, f"current_{key}", Reading(current[0], f"memory_summary: {cells[0]}, Cur Usage ({where})",
                                                            current[1]))

    def _smi_csv(self, line: str, where: str) -> bool:
        """nvidia-smi --query-gpu's header, and the rows under it."""
        if _SMI_CSV_HEADER.search(line):
            self.csv_smi = True
            _add_format(self.formats, "nvidia-smi")
            return True
        if not self.csv_smi:
            return False
        m = _SMI_CSV_ROW.match(line)
        one = None if m else _SMI_CSV_ONE.match(line)
        if not (m or one):
            self.csv_smi = False
            return False
        self.used.append(Reading(int((m or one).group(1)) * MiB,
                                 f"nvidia-smi --query-gpu: GPU {len(self.used)} memory.used ({where})", MiB))
        if m and "device_total" not in self.found:
            self.found["device_total"] = Reading(int(m.group(3)) * MiB, f"nvidia-smi --query-gpu: memory.total ({where})", MiB)
        return True

    def _torch_calls(self, line: str, where: str) -> bool:
        """Every torch.cuda call on the line, each with the number after it (or on the next line)."""
        calls = list(_TORCH_CALL.finditer(line))
        for i, m in enumerate(calls):
            call = m.group(1).lower().replace("-", "_").replace(" ", "_")
            kind = "allocated" if "allocated" in call else "reserved"
            key = f"{'peak' if call.startswith(('max', 'peak')) else 'current'}_{kind}"
            rest = _CALL_ARGS.sub("", line[m.end():calls[i + 1].start() if i + 1 < len(calls) else len(line)], count=1)
            got = _number(rest, where)
            if got is None:
                if i + 1 == len(calls):
                    self.pending = (key, m.group(1))
            else:
                value, resolution, unit = got
                _keep(self.found, key, Reading(value, f"{m.group(1)} ({where}, read in {unit})", resolution))
            _add_format(self.formats, "torch.cuda.max_memory_*()")
        return bool(calls)

    def _size_then_kind(self, line: str, where: str) -> None:
        for m in _SIZE_THEN_KIND.finditer(line):
            value, resolution, unit = _number(m.group(1), where)
            _keep(self.found, f"peak_{m.group(2).lower()}", Reading(value, f"{m.group(2).lower()} ({where}, read in {unit})",
                                                                    resolution))
            _add_format(self.formats, "a size then allocated/reserved")

    def measurement(self) -> Measurement:
        """The readings with their notes; InputError when none is left."""
        found, used, zeros = _without_zeros(self.found, self.used, self.notes)
        notes = self.notes
        if self.summaries and "peak_allocated" not in found:
            notes.append("the memory summary has no Peak Usage column this reads")
        if "peak_allocated" not in found and "current_allocated" in found:
            notes.append("only the current allocation was given, not the peak: it is compared with the peak as a lower bound")
        if used and len(used) > 1:
            notes.append(f"nvidia-smi shows {len(used)} GPUs; the most loaded is compared with the reported rank")
        if used:
            notes.append("nvidia-smi shows memory in use when it ran, not the peak: run it at the peak, or use "
                         "max_memory_reserved()")
        meas = Measurement(peak_allocated=found.get("peak_allocated"), peak_reserved=found.get("peak_reserved"),
                           current_allocated=found.get("current_allocated"), current_reserved=found.get("current_reserved"),
                           peak_non_releasable=found.get("peak_non_releasable"), device_used=tuple(used),
                           device_total=found.get("device_total"), cuda_ooms=self.ooms, alloc_retries=self.retries,
                           formats=tuple(self.formats), notes=tuple(notes))
        _refuse_empty(meas, zeros)
        return meas


def _refuse_empty(meas: Measurement, zeros: list) -> None:
    if meas.empty() and zeros:
        raise InputError("measured.text", "every memory figure it holds is 0 bytes (" + "; ".join(zeros) +
                                          "): nothing was allocated when it was printed, so there is nothing to "
                                          "compare; print it at the peak, or use max_memory_allocated()")
    if meas.empty():
        raise InputError("measured.text", "holds no memory figure this reads: paste the output of "
                                          "torch.cuda.memory_summary(), the numbers of torch.cuda.max_memory_allocated() "
                                          "and max_memory_reserved(), or nvidia-smi")


def _without_zeros(found: dict, used: list, notes: list) -> tuple[dict, list, list]:
    """Readings of 0 bytes left out, each with a note, and the sources of those left out: a zero is no
    measurement of a run (nothing was allocated when it was printed), and any estimate would "agree"
    with it within a fraction of it."""
    zeros = [r.source for key, r in found.items() if r.bytes == 0 and key != "device_total"]
    zeros += [r.source for r in used if r.bytes == 0]
    notes.extend(f"{source} reads 0 bytes; it is left out" for source in zeros)
    return ({k: r for k, r in found.items() if r.bytes or k == "device_total"},
            [r for r in used if r.bytes], zeros)


_NUMBER_FIELDS = {"peak_allocated_bytes": "peak_allocated", "peak_reserved_bytes": "peak_reserved",
                  "device_used_bytes": "device_used"}


def parse_measured(raw) -> Measurement:
    """The request's ``measured`` object: ``text`` (pasted output) and/or the numbers themselves
    (``peak_allocated_bytes``, ``peak_reserved_bytes``, ``device_used_bytes``); numbers given
    beside a text take precedence."""
    from ..errors import require_int
    if not isinstance(raw, dict):
        raise InputError("measured", "must be an object with text and/or peak_allocated_bytes, "
                                     "peak_reserved_bytes, device_used_bytes")
    known = ("text", *_NUMBER_FIELDS)
    for key in raw:
        if key not in known:
            raise InputError(f"measured.{str(key)[:40]}", "is not a known field; known: " + ", ".join(known))
    meas = parse_measured_text(raw["text"]) if raw.get("text") not in (None, "") else Measurement()
    values = {}
    for key, attr in _NUMBER_FIELDS.items():
        if raw.get(key) is not None:
            value = require_int(f"measured.{key}", raw[key], minimum=1, maximum=MAX_BYTES)
            reading = Reading(value, f"measured.{key}")
            values[attr] = (reading,) if attr == "device_used" else reading
    if values:
        from dataclasses import replace
        formats = meas.formats if "numbers" in meas.formats else (*meas.formats, "numbers")
        meas = replace(meas, **values, formats=formats)
    if meas.empty():
        raise InputError("measured", "give text (pasted output) or peak_allocated_bytes, peak_reserved_bytes "
                                     "or device_used_bytes")
    return meas
