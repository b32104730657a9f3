"""Bucket close: a forecast per live SKU, made once."""

from salescast.models import windows
from salescast.stream.core.close import BaselineForecaster, close_buckets
from salescast.stream.core.contract import validator
from salescast.stream.core.settings import Settings
from salescast.stream.core.state import SkuUpdate, apply_sku_update

DAY = 86_400_000
T0 = 20_000 * DAY  # a midnight


def test_closing_a_bucket_forecasts_from_the_next_one_once():
    settings = Settings.from_env({"SALESCAST_HORIZON": "3"})
    window, _ = apply_sku_update(None, SkuUpdate("sale", "a", T0, "o0", 1, units=3, revenue=3.0), settings)
    closed = close_buckets([("a", window)], T0 // DAY + 1, settings, BaselineForecaster(settings.time.season))
    assert len(closed) == 1 and len(closed[0].forecasts) == 1
    window, record = closed[0].window, closed[0].forecasts[0]
    validator("forecasts")(record)
    assert record["ts"] == T0 and [h["start"] for h in record["horizon"]] == [T0 + DAY, T0 + 2 * DAY, T0 + 3 * DAY]
    assert record["cold_start"] is True and record["model"]["name"] == "seasonal_naive"
    assert all(h["p10"] <= h["p50"] <= h["p90"] for h in record["horizon"])
    # what the next close checks demand against
    assert windows.p10_forecast(window, T0 // DAY + 1) == record["horizon"][0]["p10"]
    assert close_buckets([("a", window)], T0 // DAY + 1, settings, BaselineForecaster(7)) == []
