"""Issue 25, point 6: both figures of a one-line paste, and the size-then-word form people write."""
from pycore.check.parse import parse_measured_text

GIB = 2 ** 30


def test_both_calls_on_one_line_are_read():
    m = parse_measured_text("max_memory_allocated: 21.3 GiB, max_memory_reserved: 22.9 GiB")
    # 21.3 GiB = 213 * 2**30 / 10 bytes, 22.9 GiB = 229 * 2**30 / 10 bytes (by hand)
    assert m.peak_allocated.bytes == 213 * GIB // 10
    assert m.peak_reserved.bytes == 229 * GIB // 10


def test_size_then_allocated_and_reserved():
    m = parse_measured_text("21.3 GiB allocated, 22.9 GiB reserved")
    assert m.peak_allocated.bytes == 213 * GIB // 10
    assert m.peak_reserved.bytes == 229 * GIB // 10


def test_a_call_without_a_number_before_another_is_not_left_pending():
    m = parse_measured_text("max_memory_allocated() and max_memory_reserved(): 2048 MiB")
    assert m.peak_reserved.bytes == 2048 * 2 ** 20
    assert m.peak_allocated is None
