"""Ingest: contract validation, event-time rules per partition, and the updates a record splits into."""

import orjson
import pytest

from salescast.stream.core.contract import validator
from salescast.stream.core.ingest import Ingestor
from salescast.stream.core.settings import Settings
from salescast.stream.core.state import SkuUpdate, UserUpdate

DAY = 86_400_000
T0 = 20_000 * DAY  # a midnight


@pytest.fixture
def settings():
    return Settings.from_env({"SALESCAST_HORIZON": "3"})


def order(ts, *lines, order_id="o-1", user="u-1"):
    return orjson.dumps({"order_id": order_id, "user_id": user, "ts": ts,
                         "items": [{"sku": sku, "qty": qty, "unit_price": price} for sku, qty, price in lines]})


def test_an_order_splits_into_one_update_per_line(settings):
    ingestor = Ingestor(settings)
    out = ingestor.ingest("orders", order(T0, ("a", 2, 1.5), ("b", 1, 3.0)), partition=4, offset=17)
    assert out.dead_letter is None and out.tick == T0 // DAY
    assert [(u.sku, u.units, u.revenue, u.source, u.offset, u.line) for u in out.sku_updates] == [
        ("a", 2, 3.0, "o4", 17, 0), ("b", 1, 3.0, "o4", 17, 1)]
    assert [(u.user, u.sku, u.action) for u in out.user_updates] == [("u-1", "a", "purchase"), ("u-1", "b", "purchase")]
    assert SkuUpdate.from_wire(orjson.loads(orjson.dumps(out.sku_updates[0].to_wire()))) == out.sku_updates[0]
    assert UserUpdate.from_wire(orjson.loads(orjson.dumps(out.user_updates[0].to_wire()))) == out.user_updates[0]


def test_a_discounted_line_carries_its_depth_to_the_sku(settings):
    record = {"order_id": "o-1", "user_id": "u-1", "ts": T0,
              "items": [{"sku": "a", "qty": 3, "unit_price": 7.5, "discount": 0.25},
                        {"sku": "b", "qty": 1, "unit_price": 2}]}
    out = Ingestor(settings).ingest("orders", orjson.dumps(record), partition=0, offset=1)
    assert [(u.units, u.promo_units, u.discount_units) for u in out.sku_updates] == [(3, 3, 0.75), (1, 0, 0)]
    assert SkuUpdate.from_wire(orjson.loads(orjson.dumps(out.sku_updates[0].to_wire()))) == out.sku_updates[0]


def test_lateness_is_per_partition_and_future_is_against_the_wall_clock(settings):
    now = T0 + 10 * DAY
    ingestor = Ingestor(settings, now_ms=lambda: now)
    assert ingestor.ingest("orders", order(T0 + 10 * DAY, ("a", 1, 1)), 0, 0).dead_letter is None
    # another partition catching up days behind is not late
    assert ingestor.ingest("orders", order(T0, ("a", 1, 1)), 1, 0).dead_letter is None
    within = ingestor.ingest("orders", order(T0 + 8 * DAY + 1, ("a", 1, 1)), 0, 1)
    assert within.dead_letter is None
    late = ingestor.ingest("orders", order(T0 + 7 * DAY, ("a", 1, 1)), 0, 2).dead_letter
    assert late["reason"] == "late" and late["partition"] == 0 and late["offset"] == 2
    ahead = {"user_id": "u", "sku": "a", "action": "view", "ts": now + DAY + 1}
    future = ingestor.ingest("clicks", orjson.dumps(ahead), 0, 0).dead_letter
    assert future["reason"] == "future" and "ahead of the clock" in future["error"]
    assert ingestor.watermark == T0 + 10 * DAY  # rejected records move nothing
    assert ingestor.ingest("clicks", orjson.dumps({**ahead, "ts": now + DAY}), 0, 1).dead_letter is None
    validator("dead_letters")(late)


def test_with_the_events_clock_nothing_is_future(settings):
    simulation = Ingestor(Settings.from_env({"SALESCAST_CLOCK": "events"}), now_ms=lambda: T0)
    assert simulation.ingest("orders", order(T0 + 400 * DAY, ("a", 1, 1)), 0, 0).dead_letter is None


def test_a_restarted_ingestor_seeded_with_the_persisted_progress_judges_as_before(settings):
    before = Ingestor(settings)
    for offset, day in enumerate((5, 6, 7, 8, 9)):  # partition 1 walks event time up a day at a time
        assert before.ingest("orders", order(T0 + day * DAY, ("a", 1, 1)), 1, offset).dead_letter is None
    before.ingest("orders", order(T0 + 7 * DAY, ("a", 1, 1)), 0, 0)
    before.ingest("orders", order(T0 + 10 * DAY, ("a", 1, 1)), 0, 1)
    progress = before.progress()
    assert progress == {"orders/0": [T0 + 10 * DAY, 1], "orders/1": [T0 + 9 * DAY, 4]}
    assert before.progress() == {}  # only what was read since the last call

    after = Ingestor(settings)
    assert after.seed(progress) == (T0 + 10 * DAY) // DAY
    assert after.newest(("orders", 1)) == T0 + 9 * DAY and after.last_read(("orders", 1)) == 4
    # the crash came before partition 1's offsets 2-4 were committed: they are read again, and judged as
    # the first time (not `late` against the persisted day 9)
    assert after.ingest("orders", order(T0 + 7 * DAY, ("a", 1, 1)), 1, 2).dead_letter is None
    assert after.ingest("orders", order(T0 + 10 * DAY + 1, ("a", 1, 1)), 0, 2).dead_letter is None
    # seeding never moves a watermark back, and ignores partitions of topics this run does not read
    assert after.seed({"orders/0": [T0, 0], "renamed.orders/0": [T0 + 50 * DAY, 9]}) is None
    assert after.watermark == T0 + 10 * DAY + 1


def test_after_a_restart_lateness_uses_the_persisted_time_only_past_the_offsets_read_before(settings):
    progress = {"orders/0": [T0 + 10 * DAY, 1]}  # offsets 0 (7 days) and 1 (10 days) were read
    resumed_at_zero = Ingestor(settings)
    resumed_at_zero.seed(progress)
    # offset 0 is a re-read (its offset was not committed before the crash): judged as the first time
    assert resumed_at_zero.ingest("orders", order(T0 + 7 * DAY, ("a", 1, 1)), 0, 0).dead_letter is None
    resumed_at_two = Ingestor(settings)
    resumed_at_two.seed(progress)
    late = resumed_at_two.ingest("orders", order(T0 + 7 * DAY, ("a", 1, 1)), 0, 2).dead_letter
    assert late["reason"] == "late"  # a new record, 3 days behind its partition's newest before the restart
    assert resumed_at_two.progress() == {"orders/0": [T0 + 10 * DAY, 2]}


def test_a_partition_rewound_within_a_run_is_judged_as_after_a_restart(settings):
    """A rebalance that hands a partition back to the same worker resumes it at the committed offset:
    the records read again are not `late` against the ones read after them the first time."""
    ingestor = Ingestor(settings)
    for offset, day in enumerate(range(20)):  # a backfill: three weeks, a day per offset
        assert ingestor.ingest("orders", order(T0 + day * DAY, ("a", 1, 1)), 1, offset).dead_letter is None
    for offset, day in enumerate(range(5, 20), start=5):  # committed up to offset 4: read again from 5
        assert ingestor.ingest("orders", order(T0 + day * DAY, ("a", 1, 1)), 1, offset).dead_letter is None
    late = ingestor.ingest("orders", order(T0 + 16 * DAY, ("a", 1, 1)), 1, 20).dead_letter
    assert late["reason"] == "late"  # past the offsets read before the rewind, the newest read still counts
    assert ingestor.progress() == {"orders/1": [T0 + 19 * DAY, 20]}


def test_ticks_only_when_the_partitions_event_time_enters_a_new_bucket(settings):
    ingestor = Ingestor(settings)
    ticks = [ingestor.ingest("orders", order(ts, ("a", 1, 1)), 0, i).tick
             for i, ts in enumerate([T0, T0 + 5, T0 + DAY, T0 + DAY - 1, T0 + 2 * DAY])]
    assert ticks == [T0 // DAY, None, T0 // DAY + 1, None, T0 // DAY + 2]
    # each partition ticks on its own: partition 1's first record ticks though partition 0 is ahead
    assert ingestor.ingest("orders", order(T0, ("a", 1, 1)), 1, 0).tick == T0 // DAY
