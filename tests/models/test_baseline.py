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
