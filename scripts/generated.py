"""The generated sections of the docs pages: the text between a BEGIN and an END comment, rewritten by
the script that owns it (calibrate.py, golden.py, levers_table.py, rules_table.py)."""

from pathlib import Path


def replace_between(page: str, begin: str, end: str, text: str) -> str:
    """``page`` with the text after its first ``begin`` and up to the next ``end`` replaced by ``text``."""
    head, rest = page.split(begin, 1)
    return f"{head}{begin}\n{text}{end}{rest.split(end, 1)[1]}"


def rewrite_section(path: Path, begin: str, end: str, text: str) -> None:
    path.write_text(replace_between(path.read_text(encoding="utf-8"), begin, end, text), encoding="utf-8")
