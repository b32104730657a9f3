"""The worker's pipeline in one process, with dicts for tables: one loop for replay, evaluation and training.

`salescast replay`, `salescast evaluate --promo`, `retrain --events` and the
unit tests all run `LocalPipeline`, so none of them can drift from the others
(each used to have a loop of its own). Every step is the one the agents run
(salescast.stream.core's ingest, state and close, salescast.stream.serving.promoter,
salescast.stream.serving.recommender): ingest and
event-time rules, windows and user vectors, the candidate index, bucket close
with the served forecaster (the baseline for SKUs too new for it), promotion
proposals through the guardrails, and outcomes.

What differs from the worker, by design: records are taken one by one in the
order given (replay sorts by `ts`), so the low watermark is simply the newest
event time; the candidate index is refreshed with the users touched since the
last close, just before the next close (the worker does it after every batch);
and interim promo outcomes follow each attributed sale (the worker's, each batch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from salescast.models import windows
from salescast.models.cf import candidates
from salescast.models.promo import guardrails
from salescast.stream.core.contract import INPUT_KINDS, Source, dead_letter
from salescast.stream.core.close import BaselineForecaster, Forecaster, close_buckets
from salescast.stream.core.dedup import InMemoryOrderLedger
from salescast.stream.core.ingest import Ingestor
from salescast.stream.core.names import PROMOTIONS_SOURCE_PREFIX
from salescast.stream.core.state import apply_sku_update, apply_user_update
from salescast.stream.serving.promoter import PromoModel, Promoter, admit, outcome_updates, registration
from salescast.stream.serving.recommender import Recommender, affinity_updates
from salescast.stream.core.settings import Settings

PROMO_SOURCE = f"{PROMOTIONS_SOURCE_PREFIX}0"  # trigger registrations' source: the worker's single proposals partition


@dataclass
class Emitted:
    """A record the service emits: its contract topic key (`forecasts`, ...) and the record."""

    topic: str
    record: dict
    proposal: dict | None = None  # promo_triggers: the proposal the trigger came from (elasticity, category)


@dataclass
class PipelineCounts:
    records: int = 0
    dead_letters: int = 0
    forecasts: int = 0
    triggers: int = 0
    outcomes: int = 0
    duplicate_orders: int = 0  # orders resent within SALESCAST_DEDUP_WINDOW, counted once (stream.core.dedup)
    refused: dict[str, int] = field(default_factory=dict)  # proposals the guardrails refused, by verdict


class LocalPipeline:
    """Feed input records (`feed`), close buckets as event time passes them, `finish` at the end.

    `forecaster`, `recommender` and `promo_model` are what a worker would serve
    (`serving` loads the model store's current versions); they may be replaced
    between records, as the retrainer's hot swap does in a worker. With
    `closing` False nothing is forecast: the tables only (for training).
    """

    def __init__(self, settings: Settings, forecaster: Forecaster | None = None,
                 recommender: Recommender | None = None, promo_model: PromoModel | None = None,
                 users: bool = True, closing: bool = True, now_ms=None):
        self.settings = settings
        self.orders = InMemoryOrderLedger(settings.time.dedup_window_ms)
        self.ingestor = Ingestor(settings, {kind: kind for kind in INPUT_KINDS}, now_ms=now_ms, orders=self.orders)
        self.windows: dict[str, windows.Window] = {}
        self.vectors: dict[str, dict] = {}
        self.candidate_entries: dict[str, dict] = {}
        self.guardrails = guardrails.new_state()
        self.sku_guardrails: dict[str, dict] = {}
        self.forecaster = forecaster or BaselineForecaster(settings.time.season)
        self.recommender = recommender
        self.promoter = Promoter(promo_model, settings.promo, settings, self.candidate_entries.get,
                                 self._recommender_versions)
        self.users, self.closing = users, closing
        self.counts = PipelineCounts()
        self.open_bucket: int | None = None  # the newest event's bucket: every bucket before it is closed
        self._wall_ms = now_ms or (lambda: int(time.time() * 1000))
        self._sequence = 0  # the exactly-once position of each record: its place in the order fed
        self._touched_users: set[str] = set()

    @classmethod
    def serving(cls, settings: Settings, **options) -> "LocalPipeline":
        """With the model store's current versions, loaded and checked as a worker loads them."""
        from salescast.stream.serving.registry import CF, LSTM, PROMO, load_current

        return cls(settings, load_current(LSTM, settings), load_current(CF, settings), load_current(PROMO, settings),
                   **options)

    @property
    def promo_model(self) -> PromoModel | None:
        return self.promoter.model

    @promo_model.setter
    def promo_model(self, model: PromoModel | None) -> None:
        self.promoter.model = model

    def _recommender_versions(self) -> dict[str, str]:
        return {} if self.recommender is None else {self.recommender.name: self.recommender.version}

    def now_ms(self) -> int | None:
        """The clock that judges a promotion's occasion: the wall's, or with SALESCAST_CLOCK=events the
        newest event time read."""
        return self.ingestor.watermark if self.settings.time.clock == "events" else self._wall_ms()

    def feed(self, kind: str, raw: bytes, record: dict | None = None, partition: int = 0,
             offset: int | None = None) -> list[Emitted]:
        """One input record (`raw`, or `record` already parsed from it); what the service emits for it.

        `partition` and `offset` name the record in a dead letter (replay: 0
        and the line number).
        """
        sequence = self._sequence
        self._sequence += 1
        self.counts.records += 1
        result = self.ingestor.ingest(kind, raw, partition, sequence if offset is None else offset,
                                      record=record, dedup_offset=sequence)
        if result.dead_letter is not None:
            return [self._dead(result.dead_letter)]
        if result.duplicate_of is not None:
            self.counts.duplicate_orders += 1
            return []
        if kind == "orders" and result.tick is not None:  # a new day may have left the window
            self.orders.expire(partition, self.ingestor.newest(("orders", partition)))
        emitted: list[Emitted] = []
        bucket = self.ingestor.watermark_bucket()
        if self.open_bucket is None or bucket > self.open_bucket:
            if self.closing and self.open_bucket is not None:
                emitted += self.close(bucket)
            self.open_bucket = bucket
        held = self.windows
        for update in result.sku_updates:
            window, _ = apply_sku_update(held.get(update.sku), update, self.settings,
                                         self.open_bucket if self.closing else None)
            held[update.sku] = window
            if update.user is not None and windows.promotions(window):
                emitted += [self._outcome(outcome) for outcome in outcome_updates(update.sku, window)]
        if self.users:
            for update in result.user_updates:
                self.vectors[update.user], _ = apply_user_update(self.vectors.get(update.user), update,
                                                                 self.settings)
                self._touched_users.add(update.user)
        return emitted

    def dead_letter_line(self, number: int, reason: str, error: str, raw: bytes) -> Emitted:
        """A line of an events file that is no input record at all (not JSON, no known topic)."""
        return self._dead(dead_letter(Source("replay", 0, number), reason, error, raw))

    def close(self, watermark_bucket: int) -> list[Emitted]:
        """Close every bucket before `watermark_bucket`: forecasts, promotion decisions, final outcomes."""
        self.refresh_candidates()
        emitted: list[Emitted] = []
        for closed in close_buckets(self.windows.items(), watermark_bucket, self.settings, self.forecaster,
                                    self.promoter, self.now_ms()):
            self.windows[closed.sku] = closed.window
            self.counts.forecasts += len(closed.forecasts)
            emitted += [Emitted("forecasts", record) for record in closed.forecasts]
            emitted += [self._outcome(outcome) for _, outcome in closed.outcomes]
            if closed.proposal is not None:
                emitted += self._decide(closed.proposal)
        if self.open_bucket is None or watermark_bucket > self.open_bucket:
            self.open_bucket = watermark_bucket
        return emitted

    def finish(self) -> list[Emitted]:
        """The end of the input: close every open bucket, so each live SKU gets its last forecast."""
        if not self.closing or self.ingestor.watermark is None:
            return []
        return self.close(self.ingestor.watermark_bucket() + 1)

    def refresh_candidates(self, every_user: bool = False) -> None:
        """What the user agent and the candidate agent do for a batch: score the users touched since the
        last refresh (or `every_user`) and fold the changes in their top affinities into the SKUs'
        candidate entries."""
        users = list(self.vectors) if every_user else sorted(self._touched_users)
        self._touched_users = set()
        if not users or self.recommender is None or self.recommender.model is None:
            return
        settings = self.settings
        changes = affinity_updates(self.recommender, users, [self.vectors[u] for u in users],
                                   settings.recommendations.affinity_top, lambda sku: 0).get(0, [])
        by_sku: dict[str, list] = {}
        for sku, user, score, ts in changes:
            by_sku.setdefault(sku, []).append((user, score, ts))
        for sku, sku_changes in by_sku.items():
            self.candidate_entries[sku] = candidates.apply_changes(
                self.candidate_entries.get(sku), sku_changes, settings.recommendations.candidates_per_sku,
                settings.recommendations.interaction_half_life_ms)

    def _decide(self, proposal: dict) -> list[Emitted]:
        """The guardrails' agent: an admitted trigger is emitted and opens its attribution in the window."""
        sku_state = self.sku_guardrails.setdefault(proposal["trigger"]["sku"], guardrails.new_sku_state())
        verdict = admit(self.guardrails, sku_state, proposal, self.settings.promo)
        if verdict != guardrails.ADMITTED:
            self.counts.refused[verdict] = self.counts.refused.get(verdict, 0) + 1
            return []
        trigger = proposal["trigger"]
        sequence = self._sequence
        self._sequence += 1
        self.windows[trigger["sku"]], _ = apply_sku_update(self.windows[trigger["sku"]],
                                                           registration(trigger, PROMO_SOURCE, sequence),
                                                           self.settings)
        self.counts.triggers += 1
        return [Emitted("promo_triggers", trigger, proposal)]

    def _outcome(self, outcome: dict) -> Emitted:
        self.counts.outcomes += 1
        return Emitted("promo_outcomes", outcome)

    def _dead(self, record: dict) -> Emitted:
        self.counts.dead_letters += 1
        return Emitted("dead_letters", record)
