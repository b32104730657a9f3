"""`salescast evaluate` and the backtest, at tiny sizes (the real figures are in docs/forecasting.md)."""

import numpy as np
import pytest

from models.baseline import SeasonalNaive
from models.forecast import backtest
from models.forecast.features import History
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
    from salescast.evaluate import wineind_histories

    series = wineind_histories()["wineind"]
    assert len(series) == 176 and series.units[0] == 15136.0  # January 1980, bottles
