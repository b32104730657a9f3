"""The shop's calendar the forecaster reads: closures seen in the history and public holidays."""

from datetime import date

import numpy as np
import pytest

from salescast.models.forecast.calendar import closed_buckets, public_holidays, shop_calendar
from salescast.models.forecast.features import History
from salescast.models.timeunits import DAY_MS


def day(text: str) -> int:
    return int(np.datetime64(text, "D").astype(np.int64))


def shop(first: str, days: int, closed: set[str], sundays_closed: bool = True) -> list[History]:
    """Two SKUs selling every day from `first` but on `closed` days (and on Sundays)."""
    start = day(first)
    units = np.ones(days)
    for i in range(days):
        weekday = (start + i + 3) % 7  # 0 Monday
        if (sundays_closed and weekday == 6) or str(np.datetime64(start + i, "D")) in closed:
            units[i] = 0
    return [History(start, units.copy(), np.zeros(days), np.full(days, -1.0)) for _ in range(2)]


def test_a_day_the_shop_usually_trades_with_no_sale_is_a_closure_but_its_weekly_day_off_is_not():
    histories = shop("2015-11-02", 70, {"2015-12-25", "2015-12-01"})
    histories[0].units[5] = 0  # one SKU without a sale is not the shop closed
    assert closed_buckets(histories, 7) == [day("2015-12-01"), day("2015-12-25")]


def test_the_calendar_carries_closures_a_year_on_and_lists_the_countrys_holidays_apart():
    histories = shop("2015-11-02", 70, {"2015-12-25"})
    closures, holidays = shop_calendar(histories, 7, DAY_MS, "US")
    assert set(closures) == {day("2015-12-25"), day("2016-12-25"), day("2017-12-25")}  # closed, and a year on
    assert {day("2015-11-26"), day("2015-12-25"), day("2016-07-04"), day("2016-11-24")} <= set(holidays)
    assert day("2015-12-01") not in holidays and min(holidays) >= day("2015-11-02")
    assert shop_calendar(histories, 7, DAY_MS) == (closures, None)  # no country: no holiday input


def test_hourly_buckets_flag_every_hour_of_a_holiday_and_read_no_closures():
    hour = DAY_MS // 24
    start = day("2015-12-20") * 24
    units = np.ones(24 * 10)
    units[5 * 24:6 * 24] = 0  # closed all of 25 December: a day, not read as closures from hours
    histories = [History(start, units, np.zeros(len(units)), np.full(len(units), -1.0))]
    closures, holidays = shop_calendar(histories, 24, hour, "US")
    christmas = day("2015-12-25") * 24
    assert set(range(christmas, christmas + 24)) <= set(holidays)
    assert christmas - 1 not in holidays and closures == ()


def test_subdivisions_and_unknown_countries():
    assert date(2014, 11, 4) in public_holidays("AU-VIC", [2014])  # Melbourne Cup day: Victoria only
    assert date(2014, 11, 4) not in public_holidays("AU-NSW", [2014])
    with pytest.raises(ValueError, match="ISO 3166 country code"):
        public_holidays("Narnia", [2014])


def test_an_earlier_calendar_carries_a_closure_the_history_no_longer_holds():
    """A worker's windows keep 120 days: last Christmas reaches the next training through the live version."""
    last_winter = shop_calendar(shop("2014-11-03", 70, {"2014-12-25"}), 7, DAY_MS).closures
    assert day("2015-12-25") in last_winter
    this_autumn = shop("2015-09-01", 90, set())  # no closure in it
    assert day("2015-12-25") not in shop_calendar(this_autumn, 7, DAY_MS).closures
    carried = shop_calendar(this_autumn, 7, DAY_MS, known_closures=last_winter).closures
    assert day("2015-12-25") in carried and day("2014-12-25") not in carried  # before these histories: dropped
