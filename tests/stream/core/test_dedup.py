"""Issue 17.4: an order resent by an at-least-once producer is counted once within SALESCAST_DEDUP_WINDOW."""

import orjson

from salescast.models import windows
from salescast.stream.core.dedup import InMemoryOrderLedger, day_range, key_partition, ledger_key
from salescast.stream.core.ingest import Ingestor
from salescast.stream.core.local import LocalPipeline
from salescast.stream.core.settings import Settings

DAY = 86_400_000
T0 = 20_000 * DAY


def order(order_id, ts, qty=1):
    return orjson.dumps({"order_id": order_id, "user_id": "u-1", "ts": ts,
                         "items": [{"sku": "a", "qty": qty, "unit_price": 1.0}]})


def test_a_resend_at_another_offset_is_a_duplicate_and_a_reread_at_the_same_offset_is_not():
    settings = Settings.from_env({})
    ledger = InMemoryOrderLedger(settings.time.dedup_window_ms)
    ingestor = Ingestor(settings, orders=ledger, now_ms=lambda: T0 + DAY)
    first = ingestor.ingest("orders", order("o-1", T0, 2), partition=3, offset=10)
    assert first.duplicate_of is None and len(first.sku_updates) == 1
    resent = ingestor.ingest("orders", order("o-1", T0, 2), partition=3, offset=11)
    assert resent.duplicate_of == 10 and not resent.sku_updates and resent.dead_letter is None
    # a restart re-reads from the last commit: the original again (its position dedupes it downstream),
    # then the resend, still a duplicate
    again = Ingestor(settings, orders=ledger, now_ms=lambda: T0 + DAY)
    assert again.ingest("orders", order("o-1", T0, 2), partition=3, offset=10).sku_updates
    assert again.ingest("orders", order("o-1", T0, 2), partition=3, offset=11).duplicate_of == 10
    assert ingestor.ingest("orders", order("o-2", T0), partition=3, offset=12).sku_updates  # another order
    # clicks are never deduplicated
    click = orjson.dumps({"user_id": "u-1", "sku": "a", "action": "view", "ts": T0})
    assert all(ingestor.ingest("clicks", click, partition=3, offset=o).sku_updates for o in (13, 14))


def test_a_rejected_order_is_not_remembered_and_a_window_of_zero_turns_deduplication_off():
    settings = Settings.from_env({})
    ledger = InMemoryOrderLedger(settings.time.dedup_window_ms)
    ingestor = Ingestor(settings, orders=ledger, now_ms=lambda: T0)
    rejected = ingestor.ingest("orders", order("o-1", T0 + 5 * DAY), partition=0, offset=1)
    assert rejected.dead_letter["reason"] == "future"
    assert ingestor.ingest("orders", order("o-1", T0), partition=0, offset=2).sku_updates  # sent again, fixed
    off = Ingestor(Settings.from_env({"SALESCAST_DEDUP_WINDOW": "0"}), orders=ledger, now_ms=lambda: T0)
    assert off.ingest("orders", order("o-1", T0), partition=0, offset=3).sku_updates


def test_sightings_older_than_the_window_are_forgotten_and_keys_name_their_partition():
    ledger = InMemoryOrderLedger(7 * DAY)
    ledger.remember(2, "old", T0, 1)
    ledger.remember(2, "recent", T0 + 3 * DAY, 2)
    ledger.remember(5, "other-partition", T0, 3)
    ledger.expire(2, T0 + 8 * DAY)
    assert ledger.first_offset(2, "old", T0) is None and ledger.first_offset(2, "recent", T0 + 3 * DAY) == 2
    assert ledger.first_offset(5, "other-partition", T0) == 3
    assert key_partition(ledger_key(12345, "o/1", T0)) == 12345
    start, end = day_range(2, 0, T0 // DAY + 1)
    assert start <= ledger_key(2, "o-9", T0) < end and not start <= ledger_key(2, "o-9", T0 + DAY) < end
    assert not start <= ledger_key(3, "o-9", T0) < end


def test_replay_counts_a_resent_order_once():
    pipeline = LocalPipeline(Settings.from_env({"SALESCAST_CLOCK": "events"}))
    for offset, (order_id, qty) in enumerate([("o-1", 2), ("o-1", 2), ("o-2", 3), ("o-1", 2)]):
        pipeline.feed("orders", order(order_id, T0 + offset, qty), offset=offset)
    assert pipeline.counts.duplicate_orders == 2
    assert windows.units_between(pipeline.windows["a"], T0 // DAY, T0 // DAY) == 5
