import numpy as np

from salescast.models import windows
from salescast.models.positions import already_applied

HISTORY = 90


def test_sales_land_in_their_bucket_and_late_ones_still_count():
    w = windows.new_window(100)
    windows.add_sale(w, 100, 2, 20.0, HISTORY)
    windows.add_sale(w, 102, 1, 10.0, HISTORY)
    windows.add_sale(w, 101, 3, 30.0, HISTORY)  # late, within the kept history
    windows.add_sale(w, 99, 1, 5.0, HISTORY)  # earlier than the first bucket: prepended
    assert windows.first_bucket(w) == 99 and windows.units(w) == [1, 2, 3, 1]
    assert windows.revenue(w) == [5.0, 20.0, 30.0, 10.0]


def test_history_is_bounded_and_old_buckets_drop_off():
    w = windows.new_window(0)
    for bucket in range(200):
        windows.mark_closed(w, bucket - 1)  # each bucket closes as the next one opens
        windows.add_sale(w, bucket, 1, 1.0, HISTORY)
    assert len(windows.units(w)) == HISTORY and windows.first_bucket(w) == 200 - HISTORY
    assert not windows.add_sale(w, 5, 1, 1.0, HISTORY)  # too old to keep
    assert sum(windows.units(w)) == HISTORY


def test_a_long_gap_resets_the_window():
    w = windows.new_window(0)
    windows.add_sale(w, 0, 4, 4.0, HISTORY)
    windows.mark_closed(w, 0)
    windows.add_sale(w, 1000, 1, 1.0, HISTORY)
    assert windows.first_bucket(w) == 1000 and windows.units(w) == [1]


def test_no_bucket_drops_off_before_it_closed():
    """A backfill read unevenly: a partition months ahead reaches a SKU's window before its older buckets
    closed. They stay, with the history their forecasts read, however far ahead the new event is; and
    a window none of whose buckets closed yet takes events from before its first bucket."""
    w = windows.new_window(500)
    windows.add_sale(w, 500, 1, 1.0, HISTORY)
    windows.add_sale(w, 400, 2, 2.0, HISTORY)  # a partition read behind the one that made the window
    assert windows.first_bucket(w) == 400 and sum(windows.units(w)) == 3
    windows.mark_closed(w, 399)
    windows.add_sale(w, 560, 1, 1.0, HISTORY)
    assert windows.first_bucket(w) == 400
    assert windows.history(w, 400).units[-1] == 2  # bucket 400 still there to close
    windows.mark_closed(w, 559)
    windows.add_sale(w, 561, 1, 1.0, HISTORY)  # once closed, the history bound holds again: the
    # HISTORY buckets up to the oldest one open (560), and the open ones
    assert windows.first_bucket(w) == 560 - HISTORY + 1 and len(windows.units(w)) == HISTORY + 1
    windows.add_sale(w, 1000, 1, 1.0, HISTORY)  # never more than HOLD_LIMIT x HISTORY buckets held
    assert len(windows.units(w)) <= windows.HOLD_LIMIT * HISTORY


def test_replayed_positions_are_skipped_per_source():
    seen = windows.applied_positions(windows.new_window(0))
    assert not already_applied(seen, "o1", (10, 0))
    assert not already_applied(seen, "o1", (10, 1))
    assert already_applied(seen, "o1", (10, 0))
    assert already_applied(seen, "o1", (9, 5))
    assert not already_applied(seen, "o2", (3, 0))  # other partitions are independent


def test_history_pads_with_zeros_to_the_closed_bucket():
    w = windows.new_window(10)
    windows.add_sale(w, 10, 2, 2.0, HISTORY)
    windows.add_sale(w, 12, 1, 1.0, HISTORY)
    h = windows.history(w, 14)
    assert h.first_bucket == 10 and h.end_bucket == 15
    assert h.units.tolist() == [2, 0, 1, 0, 0]
    assert h.on_hand.tolist() == [-1] * 5  # no stock report: unknown, not sold out
    assert windows.history(w, 11).units.tolist() == [2, 0]
    assert isinstance(windows.history(w, 9).units, np.ndarray) and len(windows.history(w, 9)) == 0


def test_history_keeps_promotion_units_and_stock_reports_per_bucket():
    w = windows.new_window(10)
    windows.add_sale(w, 10, 3, 30.0, HISTORY, promo_units=2)
    windows.set_inventory(w, 11 * 86_400_000, 0, 9.5, "toys", bucket=11, history=HISTORY)
    windows.set_inventory(w, 12 * 86_400_000, 40, None, None, bucket=12, history=HISTORY)
    h = windows.history(w, 13)
    assert h.promo_units.tolist() == [2, 0, 0, 0]
    assert h.on_hand.tolist() == [-1, 0, 40, -1]
    assert windows.on_hand(w) == 40 and windows.list_price(w) == 9.5


def test_a_window_stored_before_promo_and_stock_arrays_existed_still_works():
    old = {"b": 5, "u": [1, 2], "r": [1.0, 2.0], "c": [0, 3], "oh": None, "oh_ts": None, "lp": None, "cat": None,
           "closed": 4, "seen": {}}
    windows.add_sale(old, 7, 1, 1.0, HISTORY, promo_units=1)
    assert old["u"] == [1, 2, 1] and old["d"] == [0, 0, 1] and old["s"] == [-1, -1, -1]


def test_inventory_keeps_the_latest_by_event_time():
    w = windows.new_window(0)
    windows.set_inventory(w, 200, 5, 9.9, "toys", 0, HISTORY)
    windows.set_inventory(w, 100, 50, None, None, 0, HISTORY)  # older: ignored
    assert windows.on_hand(w) == 5 and windows.list_price(w) == 9.9 and windows.category(w) == "toys"


def test_buckets_view_is_oldest_first_with_starts():
    w = windows.new_window(1)
    windows.add_sale(w, 1, 1, 2.0, HISTORY)
    windows.add_clicks(w, 2, 3, HISTORY)
    rows = windows.buckets_view(w, 1000, 28)
    assert rows == [{"start": 1000, "units": 1, "revenue": 2.0, "clicks": 0},
                    {"start": 2000, "units": 0, "revenue": 0.0, "clicks": 3}]
    assert windows.buckets_view(w, 1000, 1) == rows[-1:]


def test_a_quiet_skus_window_catches_up_so_a_sale_after_a_quiet_year_keeps_no_year_open():
    w = windows.new_window(0)
    windows.add_sale(w, 0, 1, 1.0, HISTORY)
    windows.mark_closed(w, 27)  # its last live close; the quiet closes after it were not written
    windows.catch_up(w, 400, active=28)
    assert windows.first_open(w) == 400
    windows.add_sale(w, 400, 1, 1.0, HISTORY)
    assert windows.first_bucket(w) == 400 and windows.units(w) == [1]
    live = windows.new_window(0)
    windows.add_sale(live, 390, 1, 1.0, HISTORY)
    windows.mark_closed(live, 380)
    windows.catch_up(live, 400, active=28)
    assert windows.first_open(live) == 381  # buckets 390-399 still to forecast: left open


def test_the_history_a_close_reads_does_not_depend_on_what_else_the_window_holds():
    """A worker whose window kept old buckets open and a replay whose window dropped them read the same."""
    kept, dropped = windows.new_window(100), windows.new_window(100)
    for w in (kept, dropped):
        windows.add_sale(w, 100, 3, 3.0, HISTORY)
    windows.mark_closed(kept, 127)  # a worker behind: its window keeps bucket 100
    windows.mark_closed(dropped, 299)  # a replay that caught the quiet SKU up: the sale at 300 resets its window
    for w in (kept, dropped):
        windows.add_sale(w, 300, 1, 1.0, HISTORY)
    assert windows.first_bucket(kept) == 100 and windows.first_bucket(dropped) == 300
    a, b = windows.history(kept, 300, HISTORY), windows.history(dropped, 300, HISTORY)
    assert a.first_bucket == b.first_bucket == 300 - HISTORY + 1
    assert a.units.tolist() == b.units.tolist() == [0] * (HISTORY - 1) + [1]
    assert a.on_hand.tolist() == b.on_hand.tolist()
    young = windows.new_window(295)
    windows.add_sale(young, 295, 2, 2.0, HISTORY)
    assert windows.history(young, 300, HISTORY).units.tolist() == [2, 0, 0, 0, 0, 0]  # from its first event
