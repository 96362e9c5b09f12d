"""The statistics of search comparisons, against values worked out by hand."""

import math

import pytest

from primer_search.stats import compute_ratio, correlation_p, paired_test, spread, steps_to_reach


def test_spread_is_median_quartiles_and_sample_std_of_the_finite_values():
    s = spread([4.0, 1.0, 3.0, 2.0, math.inf])
    assert s["n"] == 4 and s["failed"] == 1
    assert s["median"] == 2.5 and s["q1"] == 1.75 and s["q3"] == 3.25
    assert s["std"] == pytest.approx(math.sqrt(5 / 3))
    assert spread([7.0])["std"] == 0.0
    assert math.isnan(spread([math.inf])["median"])


def test_paired_test_is_exact_for_five_seeds():
    # Five pairs, a better in every one: the exact one-sided p-value is 2^-5.
    a = [5.0, 6.0, 5.5, 6.2, 5.9]
    b = [6.0, 6.5, 6.1, 6.3, 7.0]
    r = paired_test(a, b)
    assert r["n"] == 5 and r["wins"] == 5
    assert r["p_value"] == pytest.approx(1 / 32)
    assert r["median_difference"] == pytest.approx(-0.6)
    # The other way round it is the least significant value.
    assert paired_test(b, a)["p_value"] == pytest.approx(1.0)
    # Two-sided doubles it.
    assert paired_test(a, b, "two-sided")["p_value"] == pytest.approx(1 / 16)


def test_paired_test_drops_failed_pairs_and_needs_pairs():
    r = paired_test([1.0, math.inf, 2.0], [2.0, 3.0, 3.0])
    assert r["n"] == 2 and r["wins"] == 2 and r["p_value"] == pytest.approx(0.25)
    assert paired_test([1.0], [2.0])["p_value"] is None
    assert paired_test([1.0, 2.0], [1.0, 2.0])["p_value"] is None
    with pytest.raises(ValueError, match="needs pairs: got 2 and 1"):
        paired_test([1.0, 2.0], [1.0])


def test_steps_to_reach_interpolates_between_points():
    curve = [(100, 10.0), (200, 8.0), (300, 6.0)]
    assert steps_to_reach(curve, 7.0) == 250.0
    assert steps_to_reach(curve, 10.0) == 100.0
    assert steps_to_reach(curve, 5.0) is None


def test_compute_ratio_of_a_block_twice_as_fast():
    # The reference reaches 4.0 at step 400; the block reaches it at step 200.
    ref = [[(100, 7.0), (200, 6.0), (300, 5.0), (400, 4.0)]] * 2
    block = [[(100, 6.0), (200, 4.0), (300, 3.5), (400, 3.0)]] * 2
    r = compute_ratio(block, ref, resamples=200)
    assert r["ratio"] == pytest.approx(2.0)
    assert r["low"] == pytest.approx(2.0) and r["high"] == pytest.approx(2.0)
    # Seeds that disagree widen the interval around the point estimate.
    noisy = [[(100, 6.0), (200, 4.4), (300, 3.5), (400, 3.0)],
             [(100, 6.0), (200, 3.6), (300, 3.5), (400, 3.0)]]
    r = compute_ratio(noisy, ref, resamples=500)
    assert r["ratio"] == pytest.approx(2.0)
    assert r["low"] < 2.0 < r["high"]
    # A block that never gets there has no ratio.
    slow = [[(100, 9.0), (200, 8.0), (300, 7.0), (400, 6.0)]]
    assert compute_ratio(slow, ref, resamples=10)["ratio"] is None


def test_a_correlation_is_tested_against_chance_as_scipy_tests_spearman():
    """correlation_p is the one-sided p-value SciPy gives Spearman's rho over the same
    pairs; it needs 3 pairs, and a perfect ranking is p = 0."""
    from scipy import stats

    xs = [3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0, 6.0, 7.0]
    ys = [2.0, 7.0, 1.0, 8.0, 2.5, 8.5, 1.5, 8.0, 3.0]
    ref = stats.spearmanr(xs, ys, alternative="greater")
    assert correlation_p(ref.statistic, len(xs)) == pytest.approx(ref.pvalue)
    assert correlation_p(0.08, 9) > 0.4 and correlation_p(0.68, 9) < 0.05
    assert correlation_p(1.0, 9) == 0.0 and correlation_p(-1.0, 9) == 1.0
    assert correlation_p(0.9, 2) is None and correlation_p(None, 9) is None
