"""The engine-log readers' shared loop (pycore/check/engine_log.py _first_matches): each line gives the
first pattern it matches, in the table's order, and only matching lines are kept."""

import re

from pycore.check.engine_log import LLAMA, _first_matches, _read_llama


def test_each_line_gives_its_first_matching_pattern_only():
    patterns = {"a": re.compile(r"x=(\d+)"), "b": re.compile(r"(\d+)")}
    kept = []
    got = [(line, name, m.group(1)) for line, name, m in _first_matches(["x=1 2", "3", "none"], patterns, kept)]
    assert got == [("x=1 2", "a", "1"), ("3", "b", "3")]
    assert kept == ["x=1 2", "3"]


def test_llama_cpp_buffers_add_up_per_device_and_unread_lines_are_not_kept():
    # 1024.5 MiB + 512.25 MiB on CUDA0: (1024.5 + 512.25) x 2**20 = 1,611,399,168 bytes, summed per line
    lines = ["load_tensors: CUDA0 model buffer size =  1024.50 MiB", "something else",
             "load_tensors: CUDA0 model buffer size =   512.25 MiB", "llama_context: n_ctx = 4096"]
    log = _read_llama(lines)
    assert log.devices == {"model": {"CUDA0": 1024 * 2 ** 20 + 512 * 2 ** 20 + 2 ** 19 + 2 ** 18}}
    assert log.settings == {"n_ctx": 4096}
    assert "something else" not in log.lines and len(log.lines) == 3
    assert set(LLAMA) >= {"model_buffer", "n_ctx"}
