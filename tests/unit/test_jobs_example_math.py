"""The example jobs' computations, without a database."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.jobs.examples.hplc_peak_summary import summarize_peaks
from streams.jobs.examples.retrain_model import fit_line


def test_peak_summary():
    summary = summarize_peaks(
        [
            {"rt_min": 1.0, "area": 30.0, "height": 1},
            {"rt_min": 2.5, "area": 60.0, "height": 5},
            {"rt_min": 3.0, "area": 10.0, "height": 1},
            {"rt_min": 4.0, "area": 0.0, "height": 0},  # not a peak
        ]
    )
    assert (summary.count, summary.total_area) == (3, 100.0)
    assert (summary.main_rt_min, summary.main_area, summary.purity_pct) == (2.5, 60.0, 60.0)


def test_peak_summary_needs_a_peak():
    with pytest.raises(ValueError, match="no peak"):
        summarize_peaks([])


@given(
    slope=st.floats(-1e3, 1e3, allow_nan=False),
    intercept=st.floats(-1e3, 1e3, allow_nan=False),
    xs=st.lists(st.integers(0, 100), min_size=2, max_size=30, unique=True),
)
def test_fit_line_recovers_an_exact_line(slope, intercept, xs):
    fit = fit_line([(float(x), slope * x + intercept) for x in xs])
    assert math.isclose(fit.slope, slope, rel_tol=1e-6, abs_tol=1e-6)
    assert math.isclose(fit.intercept, intercept, rel_tol=1e-6, abs_tol=1e-4)
    assert fit.points == len(xs)


def test_fit_line_rejects_degenerate_input():
    with pytest.raises(ValueError, match="at least 2"):
        fit_line([(1.0, 2.0)])
    with pytest.raises(ValueError, match="same injection volume"):
        fit_line([(5.0, 1.0), (5.0, 2.0)])
    noisy = fit_line([(0.0, 0.0), (1.0, 1.2), (2.0, 1.9), (3.0, 3.1)])
    assert 0.9 < noisy.r_squared < 1.0
