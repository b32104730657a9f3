"""Event time that holds on real data (contract v1.1): gaps lose nothing, `future` is against the clock,
buckets close on the low watermark, every live SKU is forecast at every close, no stale promotion."""

import orjson
import pytest

from salescast.models import windows
from salescast.stream.core.close import BaselineForecaster, close_buckets
from salescast.stream.core.ingest import Ingestor
from salescast.stream.core.state import SkuUpdate, apply_sku_update
from salescast.stream.core.local import LocalPipeline
from salescast.stream.core.settings import Settings
from salescast.stream.core.watermarks import PENDING, LowWatermark

DAY = 86_400_000
T0 = 20_000 * DAY  # a midnight
NOW = T0 + 400 * DAY  # the wall clock of these tests: all their history is in the past


def order(ts, sku="a", qty=1, order_id="o"):
    return {"order_id": order_id, "user_id": "u", "ts": ts, "items": [{"sku": sku, "qty": qty, "unit_price": 2.0}]}


def pipeline(**env) -> LocalPipeline:
    return LocalPipeline(Settings.from_env({"SALESCAST_HORIZON": "2", **env}), now_ms=lambda: NOW)


def feed(pipe: LocalPipeline, kind: str, record: dict, partition: int = 0):
    return pipe.feed(kind, orjson.dumps(record), partition=partition)


def units_by_day(window: windows.Window) -> dict[int, int]:
    return {windows.first_bucket(window) + i: u for i, u in enumerate(windows.units(window)) if u}


@pytest.mark.parametrize("gap_days", [2, 10, 60])
def test_a_shop_closed_for_days_loses_nothing_after_it(gap_days):
    """v1 dead-lettered the first order after a closure as `future`, and every one after it."""
    pipe = pipeline()
    days = list(range(5)) + [5 + gap_days + d for d in range(5)]
    emitted = []
    for number, day in enumerate(days):
        emitted += feed(pipe, "orders", order(T0 + day * DAY + 3_600_000, qty=number + 1, order_id=f"o{number}"))
    emitted += pipe.finish()
    assert [e for e in emitted if e.topic == "dead_letters"] == []
    assert units_by_day(pipe.windows["a"]) == {T0 // DAY + day: number + 1 for number, day in enumerate(days)}


@pytest.mark.parametrize("gap_days", [2, 10, 60])
def test_a_gap_in_one_partition_or_in_all_loses_nothing(gap_days):
    settings = Settings.from_env({})
    ingestor = Ingestor(settings, now_ms=lambda: NOW)
    # partition 1 is quiet for the gap while partition 0 goes on; then both are quiet, then both resume
    schedule = [(0, d) for d in range(3 + gap_days)] + [(1, 0), (1, 1), (1, 2 + gap_days)]
    schedule += [(0, 5 + 2 * gap_days), (1, 5 + 2 * gap_days)]
    offsets = {0: 0, 1: 0}
    for partition, day in schedule:
        result = ingestor.ingest("orders", orjson.dumps(order(T0 + day * DAY)), partition, offsets[partition])
        offsets[partition] += 1
        assert result.dead_letter is None, (partition, day, result.dead_letter)


def test_one_record_a_year_ahead_of_the_clock_is_future_and_the_records_after_it_count():
    pipe = pipeline()
    feed(pipe, "orders", order(NOW - 2 * DAY, qty=1, order_id="o1"))
    dead = feed(pipe, "orders", order(NOW + 365 * DAY, qty=5, order_id="typo"))
    assert [(e.topic, e.record["reason"]) for e in dead] == [("dead_letters", "future")]
    feed(pipe, "orders", order(NOW - DAY, qty=2, order_id="o2"))
    feed(pipe, "orders", order(NOW, qty=3, order_id="o3"))
    assert units_by_day(pipe.windows["a"]) == {NOW // DAY - 2: 1, NOW // DAY - 1: 2, NOW // DAY: 3}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_bucket_close_waits_for_a_lagging_partition_and_not_for_an_idle_one():
    settings = Settings.from_env({"SALESCAST_IDLE_TIMEOUT_MS": "30000"})
    clock = Clock()
    ingestor = Ingestor(settings, now_ms=lambda: NOW, monotonic=clock)
    ingestor.assign([("orders", 0), ("orders", 1), ("clicks", 0)])
    low = LowWatermark(settings.time.bucket_ms)

    def send(backlog=lambda kind, partition: False):
        low.update(ingestor.marks(backlog), clock.now)
        return low.bucket()

    ingestor.ingest("orders", orjson.dumps(order(T0 + 2 * DAY)), 0, 0)  # a backfill: partition 0 runs ahead
    assert send() is None  # orders/1 and clicks/0 have read nothing yet: nothing may close
    ingestor.ingest("orders", orjson.dumps(order(T0 + 3600)), 1, 0)
    clock.now += 5
    assert send() is None  # clicks/0 still holds it: assigned, nothing read, not idle yet
    clock.now += 30
    # clicks/0 has been silent for the idle timeout with nothing to read: it no longer holds anything back;
    # orders/1 lags in day 0 (it has records waiting), so day 0 stays open however long that takes
    assert send(backlog=lambda kind, partition: kind == "orders") == T0 // DAY
    ingestor.ingest("orders", orjson.dumps(order(T0 + DAY + 5)), 1, 1)
    assert send() == T0 // DAY + 1  # orders/1 passed day 0's end: day 0 may close, day 1 not yet
    marks = ingestor.marks()
    assert marks["clicks/0"] == [PENDING, True] and marks["orders/1"] == [T0 + DAY + 5, False]
    # the lagging partition goes quiet at the end of its backlog: then the newest event time rules
    clock.now += 60
    assert send() == T0 // DAY + 2
    # a partition that wakes from idle behind the others reopens nothing
    ingestor.ingest("orders", orjson.dumps(order(T0 + DAY + 6)), 1, 2)
    assert send() == T0 // DAY + 2


def test_low_watermark_merges_marks_from_many_workers_in_any_order():
    low = LowWatermark(DAY)
    low.update({"orders/0": [T0 + DAY, False]}, sent_at=2.0)
    low.update({"orders/1": [T0 + 5, False]}, sent_at=1.0)
    assert low.value() == T0 + 5 and low.bucket() == T0 // DAY
    low.update({"orders/0": [T0 + 5, True]}, sent_at=1.5)  # older news from another worker
    assert low.marks["orders/0"][:2] == (T0 + DAY, False)
    low.update({"orders/1": [T0 + 2 * DAY, False]}, sent_at=3.0)
    assert low.bucket() == T0 // DAY + 1 and low.newest() == T0 + 2 * DAY


def test_a_partition_no_worker_has_reported_yet_holds_the_watermark_back_for_the_idle_timeout():
    """Two workers starting together: the first one's marks reach a SKU partition before the second's."""
    low = LowWatermark(DAY, idle_timeout_ms=30_000)
    low.update({"orders/0": [T0 + DAY, False]}, sent_at=100.0, partitions={"orders": 2})
    assert low.bucket() is None  # orders/1 exists, and its worker has not said where it is
    low.update({"orders/0": [T0 + DAY, False]}, sent_at=131.0, partitions={"orders": 2})
    assert low.bucket() == T0 // DAY + 1  # silent for the idle timeout: no longer waited for
    low = LowWatermark(DAY, idle_timeout_ms=30_000)
    low.update({"orders/0": [T0 + DAY, False]}, sent_at=100.0, partitions={"orders": 2})
    low.update({"orders/1": [T0 + 5, False]}, sent_at=101.0)
    assert low.bucket() == T0 // DAY


def window_with(*events, settings):
    window = None
    for offset, (kind, day) in enumerate(events):
        update = SkuUpdate(kind, "a", T0 + day * DAY, "o0", offset, units=1 if kind == "sale" else 0, on_hand=5)
        window, _ = apply_sku_update(window, update, settings)
    return window


def test_every_live_sku_is_forecast_at_every_close_and_a_quiet_one_is_not():
    settings = Settings.from_env({"SALESCAST_HORIZON": "2", "SALESCAST_ACTIVE_BUCKETS": "3"})
    sold_today = window_with(("sale", 0), ("sale", 10), settings=settings)
    clicked_yesterday = window_with(("click", 9), settings=settings)
    stock_report_long_ago = window_with(("inventory", 1), settings=settings)
    for window in (sold_today, clicked_yesterday, stock_report_long_ago):
        windows.mark_closed(window, T0 // DAY + 9)
    closed = close_buckets([("sold", sold_today), ("clicked", clicked_yesterday), ("stale", stock_report_long_ago)],
                           T0 // DAY + 11, settings, BaselineForecaster(7))
    assert {c.sku: [f["ts"] for f in c.forecasts] for c in closed} == {"sold": [T0 + 10 * DAY],
                                                                       "clicked": [T0 + 10 * DAY]}
    # a gap: the low watermark leaps 5 buckets; the SKU is forecast as of each bucket while it is live
    closed = close_buckets([("sold", sold_today)], T0 // DAY + 16, settings, BaselineForecaster(7))
    assert [f["ts"] for f in closed[0].forecasts] == [T0 + 11 * DAY, T0 + 12 * DAY]
    assert windows.first_open(closed[0].window) == T0 // DAY + 16


def test_live_buckets_reads_events_ahead_of_the_watermark_right():
    """A SKU with events past the bucket closing (read from a partition ahead) is live by its past events."""
    settings = Settings.from_env({})
    window = window_with(("sale", 0), ("sale", 30), settings=settings)
    b = T0 // DAY
    assert windows.live_buckets(window, b + 1, b + 29, active=28) == list(range(b + 1, b + 28))
    assert windows.live_buckets(window, b + 28, b + 40, active=28) == list(range(b + 30, b + 41))
    del window["le"]  # a window stored before `le` existed: found from its arrays
    assert windows.live_buckets(window, b + 28, b + 40, active=28) == list(range(b + 30, b + 41))


class Proposing:
    model = object()

    def __init__(self):
        self.calls = []

    def at_close(self, sku, window, forecast, now, propose=True):
        self.calls.append((forecast["ts"], propose))
        return ({"trigger": {"sku": sku}} if propose else None), []


def test_no_promotion_for_a_bucket_that_closed_long_before_the_clock():
    settings = Settings.from_env({"SALESCAST_PROMO_MAX_AGE": "2d"})
    promoter = Proposing()
    for day, expected in ((10, True), (NOW // DAY - T0 // DAY - 3, True), (NOW // DAY - T0 // DAY - 4, False)):
        window = window_with(("sale", day), settings=settings)
        closed = close_buckets([("a", window)], T0 // DAY + day + 1, settings, BaselineForecaster(7), promoter,
                               now_ms=None if day == 10 else NOW)
        assert (closed[0].proposal is not None) is expected, day
    assert [propose for _, propose in promoter.calls] == [True, True, False]


def test_the_pipelines_clock_is_the_wall_or_with_the_events_clock_the_newest_event():
    """What judges a promotion's occasion; either way the history itself is read the same."""
    from salescast.sim.generator import Shop, ShopConfig

    shop = Shop(ShopConfig(seed=5, skus=10, users=300, days=20))
    records = list(shop.events())
    history = pipeline()
    assert history.now_ms() == NOW
    simulated = pipeline(SALESCAST_CLOCK="events")
    for kind, record in records:
        feed(history, kind, record)
        feed(simulated, kind, record)
    assert simulated.now_ms() == max(record["ts"] for _, record in records)
    assert history.counts.forecasts == simulated.counts.forecasts > 0
    assert history.counts.dead_letters == simulated.counts.dead_letters == 0
