"""The pieces of the measured-text reader (pycore/check/parse.py), each on its own: the bounds on the
text, and one reader per printed format. Expected bytes are worked out by hand from the printed figures
(MiB = 2**20, GiB = 2**30)."""

import pytest

from pycore.check.parse import MAX_LINES, MAX_TEXT_CHARS, Measurement, _bounded_lines, _Reader, _refuse_empty
from pycore.errors import InputError

MiB, GiB = 2 ** 20, 2 ** 30


def _read(*lines: str) -> _Reader:
    reader = _Reader()
    for number, line in enumerate(lines, 1):
        reader.read_line(line, number)
    return reader


@pytest.mark.parametrize("text, words", [(None, "must be text"), ("x" * (MAX_TEXT_CHARS + 1), "characters"),
                                         ("1\n" * (MAX_LINES + 1), "lines")])
def test_the_text_is_bounded_before_any_line_is_read(text, words):
    with pytest.raises(InputError) as exc:
        _bounded_lines(text)
    assert exc.value.field == "measured.text" and words in exc.value.message


def test_a_summary_row_gives_the_current_and_the_peak_of_its_quantity():
    r = _read("|                  PyTorch CUDA memory summary, device ID 0                 |",
              "|            CUDA OOMs: 2            |        cudaMalloc retries: 5         |",
              "| Allocated memory      |  23961 MiB |  24000 MiB |  99 GiB    |  98 GiB    |")
    assert r.found["peak_allocated"].bytes == 24000 * MiB           # 25,165,824,000
    assert r.found["current_allocated"].bytes == 23961 * MiB
    assert r.found["peak_allocated"].resolution_bytes == MiB
    assert (r.ooms, r.retries) == (2, 5)


def test_summary_rows_outside_the_first_summary_are_not_read():
    header = "|                  PyTorch CUDA memory summary, device ID 0                 |"
    r = _read(header, "| Allocated memory | 1 GiB | 2 GiB | 3 GiB | 4 GiB |", header,
              "| Allocated memory | 5 GiB | 6 GiB | 7 GiB | 8 GiB |")
    assert r.found["peak_allocated"].bytes == 2 * GiB
    assert r.notes == ["the text holds more than one memory summary; the first one is read"]


def test_the_smi_table_gives_each_gpu_and_the_first_total():
    r = _read("| N/A   34C    P0    72W / 700W |  40123MiB / 81559MiB |      0%      Default |",
              "| N/A   35C    P0    70W / 700W |  38000MiB / 81559MiB |      0%      Default |")
    assert [u.bytes for u in r.used] == [40123 * MiB, 38000 * MiB]
    assert r.found["device_total"].bytes == 81559 * MiB and r.formats == ["nvidia-smi"]


def test_smi_csv_rows_are_read_until_a_line_that_is_not_one():
    r = _read("memory.used [MiB], memory.total [MiB]", "1234 MiB, 81559 MiB", "2000, 81559", "done",
              "3000, 81559")
    assert [u.bytes for u in r.used] == [1234 * MiB, 2000 * MiB]
    assert r.found["device_total"].bytes == 81559 * MiB


def test_a_call_whose_value_is_on_the_next_line_is_read_there():
    r = _read(">>> torch.cuda.max_memory_allocated()", "21474836480")
    assert r.found["peak_allocated"].bytes == 21474836480 and r.pending is None


def test_a_pending_call_not_followed_by_a_number_reads_nothing():
    r = _read(">>> torch.cuda.max_memory_allocated()", "Traceback (most recent call last):")
    assert "peak_allocated" not in r.found and r.pending is None


def test_several_calls_on_one_line_each_take_the_number_after_them():
    r = _read("max_memory_allocated() = 10.5 GiB, max_memory_reserved() = 12 GiB")
    assert r.found["peak_allocated"].bytes == 10 * GiB + GiB // 2      # 11,274,289,152
    assert r.found["peak_reserved"].bytes == 12 * GiB


def test_a_size_then_its_kind_is_read_as_a_peak():
    r = _read("step 100: 21.5 GiB allocated, 22 GiB reserved")
    # 21.5 GiB = 215 x 2**30 / 10 = 23,085,449,216 bytes, printed to a tenth of a GiB
    assert r.found["peak_allocated"].bytes == 23_085_449_216
    assert r.found["peak_allocated"].resolution_bytes == GiB // 10
    assert r.found["peak_reserved"].bytes == 22 * GiB


def test_only_zero_readings_are_refused_with_their_sources():
    with pytest.raises(InputError) as exc:
        _read("max_memory_allocated() = 0").measurement()
    assert "0 bytes" in exc.value.message and "max_memory_allocated" in exc.value.message


def test_an_empty_measurement_is_refused_and_a_reading_is_not():
    with pytest.raises(InputError) as exc:
        _refuse_empty(Measurement(), [])
    assert "holds no memory figure" in exc.value.message
    _refuse_empty(_read("max_memory_allocated() = 1 GiB").measurement(), [])


def test_the_measurement_notes_what_nvidia_smi_cannot_show():
    meas = _read("|  40123MiB / 81559MiB |", "|  38000MiB / 81559MiB |").measurement()
    assert meas.notes == ("nvidia-smi shows 2 GPUs; the most loaded is compared with the reported rank",
                          "nvidia-smi shows memory in use when it ran, not the peak: run it at the peak, or use "
                          "max_memory_reserved()")
