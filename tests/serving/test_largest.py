"""units.largest: the one search for "the largest value that fits" (plan/solve.py, plan/serving.py,
serving/vllm.py)."""

from pycore.units import largest


def recording(limit):
    asked = []

    def fits(v):
        asked.append(v)
        return v <= limit
    return fits, asked


def test_the_bisection_finds_the_last_fitting_value():
    fits, asked = recording(37)
    assert largest(fits, 1, 100) == 37
    # (lo - 1, hi + 1) = (0, 101): mid 50 no, 25 yes, 37 yes, (37+50)//2 = 43 no, 40 no, 38 no -> 37
    assert asked == [50, 25, 37, 43, 40, 38]


def test_the_bisection_answers_lo_minus_one_when_nothing_fits_and_never_asks_lo_minus_one():
    fits, asked = recording(-5)
    assert largest(fits, 1, 8) == 0
    assert 0 not in asked
    assert largest(lambda v: v <= -5, 0, 8) == -1      # gguf_choices' range 0..n+1, -1: not even 0 layers


def test_the_bisection_answers_hi_when_everything_fits():
    assert largest(lambda v: True, 1, 131072) == 131072


def test_doubling_asks_lo_then_lo_plus_powers_of_two_then_bisects():
    fits, asked = recording(13)
    assert largest(fits, 1, 1000, doubling=True) == 13
    # lo 1 yes; 2, 3, 5, 9 yes; 17 no -> bracket (9, 17): 13 yes, 15 no, 14 no -> 13
    assert asked == [1, 2, 3, 5, 9, 17, 13, 15, 14]


def test_doubling_answers_lo_minus_one_when_lo_does_not_fit():
    fits, asked = recording(3)
    assert largest(fits, 8, 64, doubling=True) == 7
    assert asked == [8]


def test_doubling_stops_at_hi():
    fits, asked = recording(10 ** 9)
    assert largest(fits, 5, 20, doubling=True) == 20
    # 5, 6, 7, 9, 13, then min(20, 5 + 16) = 20
    assert asked == [5, 6, 7, 9, 13, 20]


def test_both_searches_agree_with_a_scan_on_every_boundary():
    for limit in range(0, 40):
        scan = max([v for v in range(1, 33) if v <= limit], default=0)
        assert largest(lambda v: v <= limit, 1, 32) == scan
        assert largest(lambda v: v <= limit, 1, 32, doubling=True) == scan
