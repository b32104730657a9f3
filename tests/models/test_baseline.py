import numpy as np

from salescast.models.baseline import MovingAverage, SeasonalNaive


def test_seasonal_naive_repeats_the_last_season_with_a_band():
    rng = np.random.default_rng(1)
    week = np.array([5, 6, 7, 8, 9, 20, 25], dtype=float)
    y = np.concatenate([week + rng.integers(-1, 2, 7) for _ in range(8)])
    f = SeasonalNaive(7).fit(y).predict(10)
    assert not f.cold_start
    assert f.p50.tolist() == np.resize(y[-7:], 10).tolist()
    assert np.all(f.p10 <= f.p50) and np.all(f.p50 <= f.p90) and np.all(f.p10 >= 0)
    assert np.any(f.p90 > f.p50)


def test_short_history_is_a_flagged_cold_start():
    f = SeasonalNaive(7).fit(np.array([2.0, 4.0, 0.0])).predict(3)
    assert f.cold_start and np.allclose(f.p50, 2.0)
    assert np.all(f.p10 <= f.p50) and np.all(f.p50 <= f.p90)
    empty = SeasonalNaive(7).fit(np.zeros(0)).predict(2)
    assert empty.cold_start and np.allclose(empty.p50, 0.0)


def test_moving_average():
    f = MovingAverage(3).fit(np.array([0, 0, 3, 3, 3], dtype=float)).predict(2)
    assert np.allclose(f.p50, 3.0) and not f.cold_start


def test_many_series_at_once_are_each_forecast_as_if_alone():
    """A bucket close forecasts every live SKU in one call, series of a length together: no row may
    borrow from another, cold starts and full histories mixed."""
    rng = np.random.default_rng(2)
    series = [rng.poisson(3, size=n).astype(float) for n in (0, 3, 13, 14, 30, 30, 90, 14, 3)]
    together = SeasonalNaive(7).predict_many(series, 10)
    for y, forecast in zip(series, together):
        assert forecast.cold_start == (len(y) < 14)
        if forecast.cold_start:
            level = y[-7:].mean() if len(y) else 0.0
            assert np.allclose(forecast.p50, level)
            continue
        low, high = np.quantile(y[7:] - y[:-7], [0.1, 0.9])  # the definition, one series alone
        p50 = np.resize(y[-7:], 10)
        assert np.array_equal(forecast.p50, p50)
        assert np.array_equal(forecast.p10, np.maximum(p50 + min(low, 0.0), 0.0))
        assert np.array_equal(forecast.p90, np.maximum(p50 + max(high, 0.0), p50))
