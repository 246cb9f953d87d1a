"""The paired bootstrap interval of a policy's success ratio to planning over shared starts."""

import math

import pytest

from vjepa_world.eval.agent import success_ratio_interval


def test_identical_runs_give_a_ratio_of_exactly_one():
    runs = [True, False, True, True, False] * 20
    assert success_ratio_interval(runs, runs) == (1.0, 1.0)


def test_against_a_reference_that_always_succeeds_it_is_the_binomial_interval():
    successes = [True] * 70 + [False] * 30  # rate 0.7 over 100 starts
    low, high = success_ratio_interval(successes, [True] * 100, level=0.9)
    half = 1.6449 * math.sqrt(0.7 * 0.3 / 100)  # the normal approximation's 90% half-width
    assert low == pytest.approx(0.7 - half, abs=0.02)
    assert high == pytest.approx(0.7 + half, abs=0.02)


def test_pairing_narrows_the_interval():
    """The policy succeeds where planning does, less often: the shared starts cancel."""
    reference = [True] * 60 + [False] * 40
    together = [True] * 45 + [False] * 55  # succeeds only on planning's successes
    shuffled = [True] * 30 + [False] * 30 + [True] * 15 + [False] * 25  # the same rate, other starts
    (low, high), (shuffled_low, shuffled_high) = (
        success_ratio_interval(run, reference) for run in (together, shuffled)
    )
    assert sum(together) == sum(shuffled)
    assert high - low < 0.8 * (shuffled_high - shuffled_low)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="same starts"):
        success_ratio_interval([True], [True, False])
    with pytest.raises(ValueError, match="never succeeds"):
        success_ratio_interval([True, False], [False, False])
