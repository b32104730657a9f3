"""Updates: applied once per input position, and their wire format, tagged, versioned and read by name (a
rolling deploy runs two versions side by side)."""

import orjson
import pytest

from salescast.models import useritem, windows
from salescast.stream.core.settings import Settings
from salescast.stream.core.state import (WIRE_VERSION, SkuUpdate, UserUpdate, WireVersionError, apply_sku_update,
                                         apply_user_update, bundles, json_lists, updates_in)

T0 = 1_760_000_000_000
TRIGGER = {"trigger_id": "a@1", "ts": T0, "valid_until": T0 + 1, "targets": [{"user_id": "u-1", "score": 0.5}],
           "holdout": ["u-2"], "reason": "overstock"}
UPDATES = [
    SkuUpdate("sale", "a", T0, "o3", 17, 2, units=3, revenue=4.5, promo_units=1, user="u-1", promo_id="p-1",
              discount_units=0.25),
    SkuUpdate("click", "a", T0, "c0", 18),
    SkuUpdate("inventory", "a", T0, "i1", 19, on_hand=0, list_price=9.5, category="toys", unit_cost=4.0),
    SkuUpdate("promo", "a", T0, "p0", 20, trigger=TRIGGER),
    UserUpdate("u-1", "a", "purchase", T0, "o3", 17, 2),
    UserUpdate("u-1", "a", "view", T0, "c0", 18),
]


def through_kafka(update):
    return type(update).from_wire(orjson.loads(orjson.dumps(update.to_wire())))


@pytest.mark.parametrize("update", UPDATES, ids=lambda u: getattr(u, "kind", "user"))
def test_every_update_survives_the_round_trip(update):
    assert through_kafka(update) == update


def test_fields_at_their_default_are_left_out():
    assert SkuUpdate("click", "a", T0, "c0", 18).to_wire() == {"v": WIRE_VERSION, "k": "click", "sku": "a", "ts": T0,
                                                               "src": "c0", "off": 18}
    assert "ln" not in UserUpdate("u-1", "a", "view", T0, "c0", 18).to_wire()
    stock_out = SkuUpdate("inventory", "a", T0, "i1", 19, on_hand=0).to_wire()
    assert stock_out["stock"] == 0 and "price" not in stock_out  # 0 on hand is a value; None is the default


@pytest.mark.parametrize("update", UPDATES, ids=lambda u: getattr(u, "kind", "user"))
def test_a_field_this_worker_does_not_know_is_ignored(update):
    """What a worker of the next version may add without a new major version."""
    wire = {**update.to_wire(), "new_field": [1, 2], "zz": None}
    assert type(update).from_wire(orjson.loads(orjson.dumps(wire))) == update


@pytest.mark.parametrize("cls, update", [(SkuUpdate, UPDATES[0]), (UserUpdate, UPDATES[4])])
def test_another_major_version_is_rejected_by_name(cls, update):
    with pytest.raises(WireVersionError, match=f"version 2: this worker reads version {WIRE_VERSION} only"):
        cls.from_wire({**update.to_wire(), "v": 2})
    unversioned = update.to_wire()
    del unversioned["v"]
    with pytest.raises(WireVersionError, match="version None"):
        cls.from_wire(unversioned)


def test_a_missing_required_field_is_an_error_not_a_default():
    wire = SkuUpdate("click", "a", T0, "c0", 18).to_wire()
    del wire["sku"]
    with pytest.raises(KeyError):
        SkuUpdate.from_wire(wire)


def test_the_positional_records_of_the_version_before_are_still_read():
    """Records in flight while the workers that wrote the positional lists are replaced."""
    assert SkuUpdate.from_wire(["sale", "a", T0, "o0", 1, 0, 2, 4.0, None, None, None]) == \
        SkuUpdate("sale", "a", T0, "o0", 1, 0, units=2, revenue=4.0)
    assert UserUpdate.from_wire(["u-1", "a", "view", T0, "c0", 1, 0]) == UserUpdate("u-1", "a", "view", T0, "c0", 1)


def test_sku_updates_are_idempotent():
    settings = Settings.from_env({})
    update = SkuUpdate("sale", "a", T0, "o0", 5, 0, units=2, revenue=4.0)
    window, changed = apply_sku_update(None, update, settings)
    assert changed and windows.units(window) == [2]
    window, changed = apply_sku_update(window, update, settings)
    assert not changed and windows.units(window) == [2]


def test_a_discounted_sale_counts_how_deep_its_discount_was_in_its_bucket():
    settings = Settings.from_env({})
    window, _ = apply_sku_update(None, SkuUpdate("sale", "a", T0, "o0", 5, 0, units=2, revenue=15.0, promo_units=2,
                                                 discount_units=0.5), settings)
    window, _ = apply_sku_update(window, SkuUpdate("sale", "a", T0, "o0", 6, 0, units=1, revenue=10.0), settings)
    history = windows.history(window, T0 // settings.time.bucket_ms)
    assert history.units.tolist() == [3] and history.discount_units.tolist() == [0.5]
    assert history.discount_depth().tolist() == pytest.approx([0.5 / 3])
    del window["x"]  # a window stored before the depth was kept: all at list price
    assert windows.history(window, T0 // settings.time.bucket_ms).discount_units.tolist() == [0.0]


def test_user_updates_use_the_configured_weights():
    settings = Settings.from_env({})
    vector, _ = apply_user_update(None, UserUpdate("u", "a", "cart", T0, "c0", 1), settings)
    vector, _ = apply_user_update(vector, UserUpdate("u", "a", "purchase", T0, "o0", 1), settings)
    assert useritem.weights(vector)["a"] == pytest.approx(settings.recommendations.interaction_weights.cart + settings.recommendations.interaction_weights.purchase)


def test_bundles_join_encoded_updates_under_a_byte_limit_and_read_back_in_order():
    updates = [SkuUpdate("click", f"sku-{i}", T0, "c0", i) for i in range(50)]
    encoded = [orjson.dumps(u.to_wire()) for u in updates]
    records = list(bundles(encoded, max_bytes=1000))
    assert len(records) > 1 and all(len(r) <= 1000 + 40 for r in records)  # the limit, plus the envelope
    assert [SkuUpdate.from_wire(w) for r in records for w in updates_in(r)] == updates
    (alone,) = bundles([b'{"v":1,"sku":"' + b"x" * 5000 + b'"}'], max_bytes=1000)  # too large: on its own
    assert updates_in(alone) == [{"v": 1, "sku": "x" * 5000}]
    assert list(bundles([])) == []


def test_json_lists_split_a_list_under_a_byte_limit_in_order():
    values = [["sku-%d" % i, "user-%d" % i, i / 7, T0] for i in range(1000)]
    records = list(json_lists(values, max_bytes=2000))
    assert len(records) > 10 and all(len(r) <= 2000 for r in records)
    assert [v for r in records for v in orjson.loads(r)] == values
    assert list(json_lists(values[:3])) == [orjson.dumps(values[:3])]  # small: encoded once, as it is
    (alone,) = json_lists([["x" * 5000]], max_bytes=1000)
    assert orjson.loads(alone) == [["x" * 5000]]
    uneven = [["a"]] * 600 + [["b" * 3000]] * 5 + [["c"]] * 10  # small values first: the sample misjudges the rest
    records = list(json_lists(uneven, max_bytes=2000))
    assert all(len(r) <= 2000 or len(orjson.loads(r)) == 1 for r in records)
    assert [v for r in records for v in orjson.loads(r)] == uneven
    assert list(json_lists([])) == [b"[]"]


def test_a_single_update_record_reads_as_one_update_and_a_bundle_of_another_version_is_refused():
    update = UserUpdate("u-1", "a", "view", T0, "c0", 1)
    assert updates_in(orjson.dumps(update.to_wire())) == [update.to_wire()]
    assert updates_in(orjson.dumps(["u-1", "a", "view", T0, "c0", 1, 0])) == [["u-1", "a", "view", T0, "c0", 1, 0]]
    with pytest.raises(WireVersionError, match="version 2"):
        updates_in(orjson.dumps({"v": 2, "updates": [update.to_wire()]}))


def test_state_and_updates_hold_no_reference_cycles():
    """The worker collects garbage rarely (stream.worker.GC_THRESHOLDS) because what it churns through, records
    decoded, updates applied, state encoded, is freed by reference counting alone: no cycles to wait for."""
    import gc

    settings = Settings.from_env({})
    gc.collect()
    gc.disable()
    try:
        state = {SkuUpdate: None, UserUpdate: None}  # a window, a vector
        apply = {SkuUpdate: apply_sku_update, UserUpdate: apply_user_update}
        for offset in range(300):
            for update in UPDATES:
                kind = type(update)
                moved = kind.from_wire(updates_in(next(bundles([orjson.dumps(update.to_wire())])))[0])
                moved.offset, moved.ts = offset, T0 + offset * 3_600_000
                state[kind] = orjson.loads(orjson.dumps(apply[kind](state[kind], moved, settings)[0]))
        assert windows.units(state[SkuUpdate]) and useritem.weights(state[UserUpdate])
        assert gc.collect() == 0
    finally:
        gc.enable()
