import numpy as np
import pytest

from salescast.models.forecast.features import (HISTORY_FEATURES, FeatureConfig, History, discount_depth, make_inputs,
                                                make_samples, split_by_time, stockout_mask)

CONFIG = FeatureConfig(input_length=4, horizon=2, season=7)


def history(units, first=100, promo=None, on_hand=None) -> History:
    units = np.asarray(units, dtype=float)
    return History(first, units, np.zeros_like(units) if promo is None else np.asarray(promo, float),
                   np.full(len(units), -1.0) if on_hand is None else np.asarray(on_hand, float))


def test_windows_slide_one_bucket_at_a_time_with_targets_right_after_their_input():
    h = history(np.arange(10))
    s = make_samples([h], CONFIG)
    assert len(s) == 10 - 4 - 2 + 1
    assert s.target_bucket.tolist() == [104, 105, 106, 107, 108]
    # the first window reads units 0..3 and predicts 4, 5 (in scaled units)
    first_scale = 1 + np.mean([0, 1, 2, 3])
    assert s.scale[0] == pytest.approx(first_scale)
    np.testing.assert_allclose(s.y[0] * s.scale[0], [4, 5], rtol=1e-6)
    np.testing.assert_allclose(np.expm1(s.x[0, :, 0]) * first_scale, [0, 1, 2, 3], rtol=1e-5)


def test_no_target_leaks_into_its_own_input():
    """Every target bucket lies after every input bucket of its window, and never inside the input."""
    rng = np.random.default_rng(0)
    units = rng.poisson(3, 40).astype(float)
    units[20] = 500.0  # a spike that would show up in any input that contains it
    s = make_samples([history(units)], CONFIG)
    for i in range(len(s)):
        start = s.target_bucket[i] - 100
        inputs = np.expm1(s.x[i, :, 0]) * s.scale[i]
        np.testing.assert_allclose(inputs, units[start - 4:start], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(s.y[i] * s.scale[i], units[start:start + 2], rtol=1e-4)
        # the scale comes from the input only: a spike among the targets does not change it
        assert s.scale[i] == pytest.approx(1 + units[start - 4:start].mean())


def test_split_by_time_keeps_every_training_target_before_the_cutoff():
    s = make_samples([history(np.arange(30)), history(np.arange(25), first=103)], CONFIG)
    train, valid = split_by_time(s, 120, CONFIG.horizon)
    assert len(train) and len(valid)
    assert (train.target_bucket + CONFIG.horizon - 1 < 120).all()
    assert (valid.target_bucket >= 120).all()
    # windows whose targets straddle the cutoff are in neither set
    assert len(train) + len(valid) < len(s)


def test_scaling_is_per_window_so_small_and_large_skus_look_alike():
    small, large = history([1, 2, 1, 2, 1, 2]), history([100, 200, 100, 200, 100, 200])
    s = make_samples([small, large], CONFIG)
    assert s.scale[0] == pytest.approx(2.5) and s.scale[1] == pytest.approx(151)
    # raw volumes differ 100x; scaled, the two are within a factor of 2 of each other
    assert 0.5 < s.y[0].mean() / s.y[1].mean() < 2
    # the scale itself is an input, so the model still knows the volume
    assert s.x[1, 0, HISTORY_FEATURES.index("log_scale")] > s.x[0, 0, HISTORY_FEATURES.index("log_scale")]


def test_all_zero_windows_stay_finite():
    s = make_samples([history(np.zeros(8))], CONFIG)
    assert np.isfinite(s.x).all() and np.isfinite(s.y).all() and (s.scale == 1).all()


def test_a_sold_out_bucket_is_flagged_in_the_input_and_masked_as_a_target():
    on_hand = [5, -1, 0, -1, -1, 30, -1]  # sold out from bucket 2 until the restock reported in bucket 5
    assert stockout_mask(np.array(on_hand, float)).tolist() == [False, False, True, True, True, False, False]
    s = make_samples([history([3, 2, 0, 0, 0, 4, 3], on_hand=on_hand)], CONFIG)
    stockout = HISTORY_FEATURES.index("stockout")
    assert s.x[0, :, stockout].tolist() == [0, 0, 1, 1]
    assert s.mask[0].tolist() == [0, 1]  # bucket 4 was sold out: its zero is not demand
    # the mean that scales a window ignores sold-out buckets
    assert s.scale[0] == pytest.approx(1 + (3 + 2) / 2)


def test_promotion_buckets_are_flagged():
    s = make_samples([history([1, 5, 6, 1, 1, 1], promo=[0, 4, 6, 0, 0, 0])], CONFIG)
    assert s.x[0, :, HISTORY_FEATURES.index("promo")].tolist() == [0, 1, 1, 0]


def test_inputs_for_scoring_match_the_training_encoding_of_the_same_window():
    units = np.arange(12, dtype=float)
    s = make_samples([history(units)], CONFIG)
    x, future, scale = make_inputs([history(units[:8])], CONFIG)  # forecasting buckets 108, 109
    row = list(s.target_bucket).index(108)
    np.testing.assert_array_equal(x[0], s.x[row])
    np.testing.assert_array_equal(future[0], s.future[row])
    assert scale[0] == s.scale[row]


def test_known_future_is_the_season_phase_of_each_horizon_bucket():
    config = FeatureConfig(input_length=4, horizon=7, season=7)
    _, future, _ = make_inputs([history(np.ones(4), first=0)], config)
    angles = np.arctan2(future[0, :, 0], future[0, :, 1]) % (2 * np.pi)
    np.testing.assert_allclose(angles, 2 * np.pi * (np.arange(4, 11) % 7) / 7, atol=1e-5)


def test_scoring_needs_a_full_input_window():
    with pytest.raises(ValueError, match="shorter than the 4 buckets"):
        make_inputs([history([1.0, 2.0])], CONFIG)


def test_a_stock_out_reported_before_the_input_window_carries_into_it():
    # sold out in bucket 1, no report since: the whole 4-bucket window at the end is sold out
    on_hand = [9, 0, -1, -1, -1, -1]
    x, _, _ = make_inputs([history([2, 0, 0, 0, 0, 0], on_hand=on_hand),
                           history([1, 1, 1, 1, 1, 1, 1, 1])], CONFIG)
    stockout = HISTORY_FEATURES.index("stockout")
    assert x[0, :, stockout].tolist() == [1, 1, 1, 1]
    assert x[1, :, stockout].tolist() == [0, 0, 0, 0]


# ------------------------------------------------------------------ young SKUs: padded in front as not on sale yet

PADDED = FeatureConfig(input_length=4, horizon=2, season=7, min_history=2)


def test_a_short_history_is_padded_in_front_as_sold_out_and_scaled_by_its_real_buckets():
    x, future, scale = make_inputs([history([3.0, 5.0]), history([1.0, 2.0, 3.0, 4.0, 5.0])], PADDED)
    stockout = HISTORY_FEATURES.index("stockout")
    assert x[0, :, stockout].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert scale[0] == pytest.approx(1 + 4.0)  # the mean of 3 and 5: the padding is not counted
    np.testing.assert_allclose(np.expm1(x[0, :, 0]) * scale[0], [0, 0, 3, 5], atol=1e-5)
    assert x[1, :, stockout].tolist() == [0.0] * 4  # long enough: nothing padded
    with pytest.raises(ValueError, match="shorter than the 2 buckets"):
        make_inputs([history([1.0])], PADDED)


def test_training_windows_start_once_min_history_buckets_are_real_and_targets_are_always_real():
    h = history([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], on_hand=[-1, -1, -1, -1, -1, -1])
    s = make_samples([h], PADDED)
    # without padding one window (target 104); with 2 padded buckets also 102 and 103
    assert s.target_bucket.tolist() == [102, 103, 104]
    stockout = HISTORY_FEATURES.index("stockout")
    assert s.x[0, :, stockout].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert s.x[1, :, stockout].tolist() == [1.0, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(s.y[0] * s.scale[0], [3.0, 4.0], rtol=1e-6)
    assert s.mask.min() == 1.0  # no target is padding
    # a real stock-out report after the padding is not confused with it
    sold_out = make_samples([history([1.0, 0.0, 3.0, 4.0], on_hand=[-1, 0, 5, -1])], PADDED)
    assert sold_out.x[0, :, stockout].tolist() == [1.0, 1.0, 0.0, 1.0]


def test_a_stored_config_without_min_history_needs_a_full_window():
    config = FeatureConfig.from_config({"input_length": 4, "horizon": 2, "season": 7})
    assert config.min_history == 4 and config == CONFIG
    assert FeatureConfig.from_config(PADDED.to_config()) == PADDED
    with pytest.raises(ValueError, match="min_history must be between 1 and input_length"):
        FeatureConfig(4, 2, 7, min_history=5)


def test_the_calendar_flags_every_read_and_forecast_bucket_it_lists():
    config = FeatureConfig(input_length=4, horizon=3, season=7, closures=(102, 105), holidays=(101, 106))
    assert config.history_features[-2:] == config.future_features[-2:] == ("closed", "holiday")
    x, future, _ = make_inputs([history(np.ones(4), first=100)], config)  # reads 100-103, forecasts 104-106
    assert x[0, :, -2].tolist() == [0, 0, 1, 0] and future[0, :, -2].tolist() == [0, 1, 0]  # closed
    assert x[0, :, -1].tolist() == [0, 1, 0, 0] and future[0, :, -1].tolist() == [0, 0, 1]  # holiday
    np.testing.assert_array_equal(x[0, :, :-2], make_inputs([history(np.ones(4), first=100)], CONFIG)[0][0])
    s = make_samples([history(np.arange(12.0))], config)
    row = list(s.target_bucket).index(104)
    np.testing.assert_array_equal(x[0, :, -2:], s.x[row, :, -2:])  # training reads the calendar as scoring does
    np.testing.assert_array_equal(future[0], s.future[row])
    assert FeatureConfig.from_config(config.to_config()) == config
    closures_only = FeatureConfig(input_length=4, horizon=3, season=7, closures=())
    assert closures_only.history_features[-1] == "closed" and "holidays" not in closures_only.to_config()
    # a model stored before the calendar reads the inputs it was trained on
    assert "closures" not in CONFIG.to_config() and CONFIG.history_features == HISTORY_FEATURES
    assert make_inputs([history(np.ones(4))], CONFIG)[0].shape[-1] == len(HISTORY_FEATURES)


def test_the_discount_depth_is_the_units_mean_fraction_off_carried_over_days_without_a_sale():
    units = np.array([[0, 2, 0, 0, 4, 1, 0]], float)
    discount_units = np.array([[0, 0.5, 0, 0, 1.2, 0, 0]])  # 2 units at 25% off, then 4 at 30%, 1 at list price
    np.testing.assert_allclose(discount_depth(units, discount_units), [[0, 0.25, 0.25, 0.25, 0.3, 0, 0]])
    assert History(0, units[0], np.zeros(7), np.full(7, -1.0)).discount_depth().tolist() == [0.0] * 7  # none kept


def test_a_price_model_reads_the_discount_depth_in_training_and_scoring_alike():
    config = FeatureConfig(input_length=4, horizon=2, season=7, closures=(103,), price=True)
    assert config.history_features == HISTORY_FEATURES + ("discount", "closed")
    assert config.future_features[-1] == "closed"  # the price ahead is not known: history only
    units = np.array([3, 1, 0, 0, 2, 5, 1, 0, 0, 4], float)
    off = np.array([0, 0.5, 0, 0, 0, 2.0, 0, 0, 0, 0])  # 50% off at 101, 40% off at 105
    h = History(100, units, (off > 0).astype(float), np.full(10, -1.0), off)
    x, future, _ = make_inputs([h.until(107)], config)  # reads 103-106: sold at 104 (list), 105 (40% off), 106
    column = config.history_features.index("discount")
    np.testing.assert_allclose(x[0, :, column], [0.5, 0.0, 0.4, 0.0])  # 103 had no sale: 101's 50% carried
    assert x[0, :, column + 1].tolist() == [1, 0, 0, 0]
    s = make_samples([h], config)
    row = list(s.target_bucket).index(107)
    np.testing.assert_array_equal(x[0], s.x[row])
    np.testing.assert_array_equal(future[0], s.future[row])
    assert FeatureConfig.from_config(config.to_config()) == config
    # a model stored before the price input reads what it was trained on, discounts or not
    assert "price" not in CONFIG.to_config() and not FeatureConfig.from_config(CONFIG.to_config()).price
    np.testing.assert_array_equal(make_inputs([h], CONFIG)[0], make_inputs([History(100, units, h.promo_units,
                                                                                    h.on_hand)], CONFIG)[0])
