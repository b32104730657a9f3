"""The shop's calendar, known-future inputs of the forecaster: the shop's own closures and public holidays.

Two flags, kept apart because they mean different things to a shop:

- **closed**: a day the shop was closed, or the same date a year or two
  after such a day (Christmas closes every year; a one-off closure is still
  one flag the model learns to weigh);
- **holiday**: a public holiday of the shop's country (the `holidays`
  package; "US", "AU-VIC" for a country and a subdivision), on which many
  shops trade, some more and some less.

The model reads both for every bucket it reads and every bucket it forecasts
(salescast.models.forecast.features), so a closed Christmas ahead is known
before it comes, and a holiday the shop trades on is not taken for one it
closes on.

A day counts as closed when no SKU sold anything on it although the shop
usually sells at that phase of its season (on that weekday, for daily
buckets): a shop closed every Sunday has no Sunday closures, the weekday
input says that already. Only history given to `shop_calendar` is read, so a
backtest passes the history before its test period.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from salescast.models.forecast.features import History
from salescast.models.timeunits import DAY_MS

USUALLY_TRADED = 0.8  # a season phase with sales in at least this share of its buckets is a trading phase
YEARS_AHEAD = 2  # public holidays and recurring closures are listed this far past the history's end


def public_holidays(country: str, years: Iterable[int]) -> list[date]:
    """The public holidays of `country` ("US", or "AU-VIC" for a subdivision) in `years`; ValueError, saying
    what is known, for a country the holidays package does not have."""
    import holidays

    code, _, subdivision = country.partition("-")
    try:
        calendar = holidays.country_holidays(code.upper(), subdiv=subdivision.upper() or None, years=list(years))
    except NotImplementedError as exc:
        raise ValueError(f"no public holidays known for {country!r}: give an ISO 3166 country code such as US, DE "
                         "or GB, optionally with a subdivision (AU-VIC, US-CA)") from exc
    return sorted(calendar)


def closed_buckets(histories: Sequence[History], season: int) -> list[int]:
    """Buckets in which no SKU sold although the shop usually sells at that phase of the season."""
    if not histories:
        return []
    first = min(h.first_bucket for h in histories)
    end = max(h.end_bucket for h in histories)
    total = np.zeros(end - first)
    for history in histories:
        total[history.first_bucket - first:history.end_bucket - first] += history.units
    selling = np.flatnonzero(total > 0)
    if len(selling) == 0:
        return []
    start, stop = selling[0], selling[-1] + 1  # the shop's trading span
    phases = (first + np.arange(end - first)) % season
    closed = []
    for phase in range(season):
        at_phase = np.flatnonzero(phases[start:stop] == phase) + start
        if len(at_phase) and np.mean(total[at_phase] > 0) >= USUALLY_TRADED:
            closed += [int(first + i) for i in at_phase if total[i] == 0]
    return sorted(closed)


def _day(bucket: int, bucket_ms: int) -> date:
    return datetime.fromtimestamp(bucket * bucket_ms / 1000, tz=timezone.utc).date()


def _buckets_of(day: date, bucket_ms: int) -> range:
    """The buckets that start on `day` (UTC)."""
    start = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000)
    return range(-(-start // bucket_ms), -(-(start + DAY_MS) // bucket_ms))


class Calendar(NamedTuple):
    """The two flags the forecaster reads, as sorted bucket indexes."""

    closures: tuple[int, ...]  # days the shop was closed, and the same dates a year or two on
    holidays: tuple[int, ...] | None  # public holidays of the shop's country; None: no country given


def shop_calendar(histories: Sequence[History], season: int, bucket_ms: int, country: str = "",
                  known_closures: Iterable[int] = ()) -> Calendar:
    """The shop's calendar from the first bucket of `histories` to `YEARS_AHEAD` years past their end, its
    closures joined by the `known_closures` in that span (an earlier version's: closures seen before these
    histories begin).

    Needs buckets that are a whole day or less (bucket = ms since the epoch // bucket_ms); longer ones get
    an empty calendar.
    """
    if bucket_ms > DAY_MS or not histories:
        return Calendar((), () if country else None)
    first = min(h.first_bucket for h in histories)
    end = max(h.end_bucket for h in histories)
    first_day, last_day = _day(first, bucket_ms), _day(end, bucket_ms) + timedelta(days=366 * YEARS_AHEAD)
    stop = _buckets_of(last_day, bucket_ms).stop

    def buckets(days: Iterable[date]) -> set[int]:
        return {bucket for day in days if first_day <= day <= last_day for bucket in _buckets_of(day, bucket_ms)}

    closed_days: set[date] = set()
    # closures are read from daily buckets only: an hourly shop's quiet hour is not a closed day
    for bucket in closed_buckets(histories, season) if bucket_ms == DAY_MS else ():
        closed = _day(bucket, bucket_ms)
        closed_days.add(closed)
        for years in range(1, YEARS_AHEAD + 1):
            try:
                closed_days.add(closed.replace(year=closed.year + years))
            except ValueError:  # 29 February
                pass
    closures = buckets(closed_days) | {bucket for bucket in known_closures if first <= bucket < stop}
    holidays = None
    if country:
        holidays = tuple(sorted(buckets(public_holidays(country, range(first_day.year, last_day.year + 1)))))
    return Calendar(tuple(sorted(closures)), holidays)
