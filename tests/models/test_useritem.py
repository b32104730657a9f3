import pytest

from salescast.models import useritem

DAY = 86_400_000


def test_weights_halve_every_half_life():
    v = useritem.new_vector()
    useritem.learn_one(v, "a", 4.0, 0, 30 * DAY, 10)
    useritem.learn_one(v, "b", 1.0, 30 * DAY, 30 * DAY, 10)
    assert useritem.weights(v)["a"] == pytest.approx(2.0) and useritem.weights(v)["b"] == pytest.approx(1.0)


def test_an_older_event_is_decayed_to_the_vector_time():
    v = useritem.new_vector()
    useritem.learn_one(v, "a", 1.0, 60 * DAY, 30 * DAY, 10)
    useritem.learn_one(v, "b", 4.0, 0, 30 * DAY, 10)
    assert useritem.weights(v)["b"] == pytest.approx(1.0) and useritem.newest_ts(v) == 60 * DAY


def test_the_cap_prunes_the_weakest():
    v = useritem.new_vector()
    for i in range(10):
        useritem.learn_one(v, f"s{i}", float(i + 1), 0, 30 * DAY, 3)
    assert set(useritem.weights(v)) == {"s7", "s8", "s9"}


def test_weights_that_decay_to_nothing_are_dropped():
    v = useritem.new_vector()
    useritem.learn_one(v, "old", 1.0, 0, DAY, 10)
    useritem.learn_one(v, "new", 1.0, 30 * DAY, DAY, 10)
    assert set(useritem.weights(v)) == {"new"}


def test_weights_at_decays_for_scoring_without_changing_state():
    v = useritem.new_vector()
    useritem.learn_one(v, "a", 2.0, 0, DAY, 10)
    assert useritem.weights_at(v, DAY, DAY)["a"] == pytest.approx(1.0)
    assert useritem.weights(v)["a"] == 2.0
