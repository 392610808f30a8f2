"""The loop's histograms: bounds are inclusive upper bounds, and buckets come out cumulative."""

from __future__ import annotations

from confmand.server.histograms import Histogram


def test_an_observation_on_a_bound_falls_in_that_bound_s_bucket() -> None:
    histogram = Histogram((1.0, 5.0))
    for value in (0.5, 1.0, 3.0, 5.0, 7.0):
        histogram.observe(value)

    figures = histogram.figures()

    assert figures.counts == (2, 2, 1)
    assert figures.cumulative() == [("1.0", 2), ("5.0", 4), ("+Inf", 5)]
    assert figures.total == 16.5
