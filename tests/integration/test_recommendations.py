"""Collaborative filtering end to end through the real broker.

Clicks and orders go in; `salescast retrain --model cf` builds the model from
the worker's own tables; after a restart, a new user views SKUs and the
worker's live recommendations and candidate index follow what they viewed,
exactly as the stored model scores the same vector offline.
"""

import json

import pytest

from salescast.models import useritem
from salescast.models.store import ModelStore
from salescast.stream.serving.recommender import Recommender
from salescast.stream.core.settings import Settings
from tests.integration.conftest import assert_valid, wait_for
from tests.integration.test_forecaster import DAY_MS, produce, produce_day_by_day, salescast

pytestmark = pytest.mark.integration
PROBE = "probe-user"


def recommendations(worker, path):
    status, body = worker.http(path)
    assert status == 200, (status, body, worker.log_tail())
    assert_valid("recommendations", body)
    return body


def test_retrain_then_live_affinities_follow_what_a_user_views(make_worker, tmp_path):
    worker = make_worker()
    events = tmp_path / "history.jsonl"
    generated = salescast(worker, "generate", "--seed", "3", "--skus", "40", "--users", "300", "--days", "14",
                          "--out", str(events))
    assert generated.returncode == 0, generated.stderr
    lines = events.read_bytes().splitlines()
    records = [json.loads(line) for line in lines]
    user_updates = sum(1 for r in records if r["topic"] == "clicks") + \
        sum(len(r["items"]) for r in records if r["topic"] == "orders")
    active_users = {r["user_id"] for r in records if r["topic"] in ("clicks", "orders")}

    worker.start()
    before = recommendations(worker, "/recommendations/users/u-1?n=5")
    assert before["fallback"] is True and before["items"] == [] and before["model"]["version"] == "none"
    produce_day_by_day(worker, lines)
    wait_for(lambda: worker.metric("salescast_updates_applied_total", table="user-items") >= user_updates,
             timeout_s=60, message="every interaction in the user-items table")

    trained = salescast(worker, "retrain", "--model", "cf")
    assert trained.returncode == 0, trained.stderr
    record = json.loads(trained.stdout)
    assert_valid("model_versions", record)
    assert record["name"] == "cf" and record["metrics"]["users"] == len(active_users)
    # (quality is judged on more data: tests/unit/test_cf.py and `salescast evaluate --cf`)
    assert 0 < record["metrics"]["ndcg@10"] <= 1 and 0 < record["metrics"]["popularity_ndcg@10"] <= 1
    stored = ModelStore(tmp_path / "var" / "models").load("cf")
    assert stored.version == record["version"]
    offline = Recommender(stored)

    worker.stop()
    worker.start()
    unknown = recommendations(worker, f"/recommendations/users/{PROBE}?n=5")
    assert unknown["fallback"] is True and len(unknown["items"]) == 5
    assert unknown["model"] == {"name": "cf", "version": record["version"]}

    settings = Settings()
    vector = useritem.new_vector()
    ts = (max(r["ts"] for r in records) // DAY_MS) * DAY_MS + 3_600_000
    first = offline.skus[int(offline.model.popular_items(None, 1)[0])]
    first_category = offline.category_of(first)
    other = next(sku for sku in (offline.skus[int(i)] for i in offline.model.popular_items(None, 40))
                 if offline.category_of(sku) != first_category)

    def view(sku, times):
        nonlocal ts
        for _ in range(times):
            ts += 1_000
            produce(worker, [json.dumps({"topic": "clicks", "user_id": PROBE, "sku": sku, "action": "view",
                                         "ts": ts})])
            useritem.learn_one(vector, sku, settings.recommendations.interaction_weights.view, ts,
                               settings.recommendations.interaction_half_life_ms, settings.recommendations.user_item_cap)

    def live_matches(expected_ids):
        def check():
            body = recommendations(worker, f"/recommendations/users/{PROBE}?n=5")
            return [item["id"] for item in body["items"]] == expected_ids and body["fallback"] is False
        return check

    def candidate_of(sku):
        return lambda: PROBE in [item["id"] for item in
                                 recommendations(worker, f"/recommendations/skus/{sku}/users?n=1000")["items"]]

    view(first, 3)
    expected = [sku for sku, _ in offline.for_user(vector, 5).items]
    assert first not in expected
    wait_for(live_matches(expected), timeout_s=30, message=f"recommendations after viewing {first}")
    (affinity,) = offline.affinities([vector], settings.recommendations.affinity_top)
    strongest = max(affinity, key=affinity.get)
    wait_for(candidate_of(strongest), timeout_s=30, message=f"{PROBE} among {strongest}'s candidates")

    # views of a SKU of another category pull the recommendations and the affinities towards it
    view(other, 6)
    moved = [sku for sku, _ in offline.for_user(vector, 5).items]
    assert moved != expected
    wait_for(live_matches(moved), timeout_s=30, message=f"recommendations after viewing {other}")
    (affinity,) = offline.affinities([vector], settings.recommendations.affinity_top)
    assert max(affinity, key=affinity.get) == other
    wait_for(candidate_of(other), timeout_s=30, message=f"{PROBE} among {other}'s candidates")
    ranked = recommendations(worker, f"/recommendations/skus/{other}/users?n=1000")
    assert ranked["fallback"] is False
    scores = [item["score"] for item in ranked["items"]]
    assert scores == sorted(scores, reverse=True)

    # a SKU no one has shown affinity for: its category's audience, flagged; bad requests are 400
    never = recommendations(worker, "/recommendations/skus/sku-never-seen/users?n=3")
    assert never["fallback"] is True and len(never["items"]) == 3
    for path in ("/recommendations/users/u-1?n=0", "/recommendations/skus/sku-1/users?n=abc"):
        status, body = worker.http(path)
        assert status == 400 and "n must be" in body["error"]
    assert worker.metric("salescast_model_info", model="recommend", version=record["version"]) == 1
