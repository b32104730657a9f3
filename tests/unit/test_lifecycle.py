"""The rule that lets a candidate model version replace the live one."""

import math

from models.lifecycle import LIVE, REJECTED, RULES, PromotionRule


def test_a_candidate_goes_live_when_it_beats_or_matches_live_within_the_margin():
    mase = PromotionRule("mase", higher_is_better=False, margin=0.02)
    assert mase.verdict({"mase": 0.90}, {"mase": 0.95})[0] == LIVE
    assert mase.verdict({"mase": 0.95}, {"mase": 0.95})[0] == LIVE  # matching is enough
    assert mase.verdict({"mase": 0.969}, {"mase": 0.95})[0] == LIVE  # within 2% worse
    verdict, why = mase.verdict({"mase": 0.98}, {"mase": 0.95})
    assert verdict == REJECTED and "0.9800" in why and "0.9500" in why
    ndcg = PromotionRule("ndcg@10", higher_is_better=True, margin=0.0)
    assert ndcg.verdict({"ndcg@10": 0.19}, {"ndcg@10": 0.18})[0] == LIVE
    assert ndcg.verdict({"ndcg@10": 0.17}, {"ndcg@10": 0.18})[0] == REJECTED


def test_without_a_comparable_live_version_the_candidate_goes_live_unless_it_is_broken():
    rule = RULES["lstm"]
    assert rule.verdict({"mase": 0.9}, None)[0] == LIVE
    assert rule.verdict({"mase": 0.9}, {"wape": 0.3})[0] == LIVE
    assert rule.verdict({"mase": math.nan}, {"mase": 0.9})[0] == REJECTED
    assert rule.verdict({}, {"mase": 0.9})[0] == REJECTED
    assert RULES["cf"].higher_is_better and not RULES["lstm"].higher_is_better
