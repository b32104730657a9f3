"""Prometheus metrics, served by prometheus-client on SALESCAST_METRICS_PORT.

Latencies are histograms in seconds. `salescast_end_to_end_latency_seconds`
is wall-clock time from the moment the input record was taken off Kafka to
the moment its output was handed to the producer; the contract's event-`ts`
to output lag is `salescast_event_time_lag_seconds` (meaningful when
producers stamp `ts` in real time, not in a sped-up demo).
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

EVENTS_CONSUMED = Counter("salescast_events_consumed_total", "Input records consumed", ["topic"])
EVENTS_PER_SECOND = Gauge("salescast_events_per_second", "Input records consumed per second, last interval")
DEAD_LETTERS = Counter("salescast_dead_letters_total", "Input records sent to the dead-letter topic", ["reason"])
FORECASTS_EMITTED = Counter("salescast_forecasts_emitted_total", "Forecast records emitted", ["model"])
TRIGGERS_EMITTED = Counter("salescast_promo_triggers_emitted_total", "Promo-trigger records emitted", ["reason"])
PROMO_PROPOSALS = Counter("salescast_promo_proposals_total", "Promotions proposed at bucket close", ["reason"])
PROMO_REFUSED = Counter("salescast_promo_refused_total", "Proposals a guardrail refused", ["guardrail"])
PROMO_OUTCOMES = Counter("salescast_promo_outcomes_total", "Promo-outcome records emitted", ["final"])
PROMO_MEMBERS = Counter("salescast_promo_members_total", "Users of finished triggers, by group",
                        ["reason", "group"])
PROMO_BUYERS = Counter("salescast_promo_buyers_total", "Users of finished triggers who bought, by group",
                       ["reason", "group"])
PROCESSING_LATENCY = Histogram("salescast_processing_latency_seconds",
                               "Time to process one batch, per input record (ingest, candidates) "
                               "or per update (sku, user)", ["stage"], buckets=LATENCY_BUCKETS)
SCORING_LATENCY = Histogram("salescast_scoring_latency_seconds", "Time to score the SKUs closed together",
                            ["model"], buckets=LATENCY_BUCKETS)
END_TO_END_LATENCY = Histogram("salescast_end_to_end_latency_seconds",
                               "Wall time from consuming an input record to emitting its output", ["output"],
                               buckets=LATENCY_BUCKETS)
EVENT_TIME_LAG = Histogram("salescast_event_time_lag_seconds", "Wall clock minus the event ts at output",
                           ["output"], buckets=(1, 10, 60, 300, 900, 3600, 21600, 86400, float("inf")))
MODEL_INFO = Gauge("salescast_model_info", "The live version of each model (value 1)", ["model", "version"])
MODEL_SWAPS = Counter("salescast_model_swaps_total", "Switches to a newly published model version while running; "
                      "result swapped, or refused (damaged, wrong shapes, non-finite output: the old one serves)",
                      ["model", "result"])
MODEL_LOAD_SECONDS = Histogram("salescast_model_load_seconds",
                               "Time to load and check a newly published version (the agents score on meanwhile)",
                               ["model"], buckets=LATENCY_BUCKETS)
CONSUMER_LAG = Gauge("salescast_consumer_lag", "Records behind the end of each assigned partition",
                     ["topic", "partition"])
PROMO_UPLIFT = Gauge("salescast_promo_uplift",
                     "Uplift (target minus holdout conversion) pooled over the triggers this worker finished, "
                     "per reason; service-wide from the members and buyers counters", ["reason"])
UPDATES_APPLIED = Counter("salescast_updates_applied_total", "Updates applied to a table (after repartitioning)",
                          ["table"])
RECORDS_REFETCHED = Counter("salescast_records_refetched_total",
                            "Records the consumer skipped (after a recovery or rebalance) that the worker read "
                            "back from the broker itself", ["topic"])
PARTITIONS_SOUGHT_BACK = Counter("salescast_partitions_sought_back_total",
                                 "Times the worker sought a partition back to records the consumer had skipped "
                                 "with no later record to show it", ["topic"])
DUPLICATES_SKIPPED = Counter("salescast_duplicates_skipped_total",
                             "Updates already applied before a restart and skipped on re-read", ["table"])
STATE_WRITTEN_BACK = Counter("salescast_state_written_back_total",
                             "Changed table values written to RocksDB and the changelog (once per key per commit, "
                             "however many updates changed it)", ["table"])
DUPLICATE_ORDERS = Counter("salescast_duplicate_orders_total",
                           "Orders whose order_id was already read on their input partition within "
                           "SALESCAST_DEDUP_WINDOW (a producer's resend): counted once")
BROKER_REACHABLE = Gauge("salescast_broker_reachable",
                         "1 while a bootstrap server accepts connections, 0 during an outage (2 probes missed)")
BROKER_OUTAGES = Counter("salescast_broker_outages_total",
                         "Times the brokers stopped answering; the worker waits, then reads on from its last commit")
DELIVERY_FAILURES = Counter("salescast_delivery_failures_total",
                            "Records the broker did not take for good: the worker committed nothing past their "
                            "input and stopped, to read it again when started")


def set_live_version(name: str, version: str, replaced: str | None = None) -> None:
    """The live version of model kind `name` as a label of salescast_model_info (the kind's metric label:
    the contract's `forecast` and `recommend`, plus `promo`); the one it replaced leaves the metric."""
    # imported here: the registry loads the served models' code, which modules importing metrics need not
    from salescast.stream.serving.registry import KINDS

    label = KINDS[name].metric_label
    if replaced is not None and replaced != version:
        try:
            MODEL_INFO.remove(label, replaced)
        except KeyError:
            pass
    MODEL_INFO.labels(label, version).set(1)


class RateMeter:
    """Turns the consumed counter into the events-per-second gauge, once per interval."""

    def __init__(self) -> None:
        self._last_total = 0.0
        self._last_time = time.monotonic()

    def tick(self, total: float) -> float:
        now = time.monotonic()
        rate = (total - self._last_total) / max(now - self._last_time, 1e-9)
        self._last_total, self._last_time = total, now
        EVENTS_PER_SECOND.set(rate)
        return rate


def consumed_total() -> float:
    return sum(sample.value for metric in EVENTS_CONSUMED.collect() for sample in metric.samples
               if sample.name.endswith("_total"))


def serve(port: int) -> None:
    start_http_server(port)


_finished: dict[str, dict[str, list[float]]] = {}  # reason -> group -> [members, buyers], this process


def record_final_outcome(reason: str, outcome: dict) -> None:
    """Counts a finished trigger's members and buyers, and moves this worker's pooled uplift gauge."""
    sums = _finished.setdefault(reason, {"targets": [0.0, 0.0], "holdout": [0.0, 0.0]})
    for group, buyers in (("targets", outcome["target_buyers"]), ("holdout", outcome["holdout_buyers"])):
        PROMO_MEMBERS.labels(reason, group).inc(outcome[group])
        PROMO_BUYERS.labels(reason, group).inc(buyers)
        sums[group][0] += outcome[group]
        sums[group][1] += buyers
    (targets, target_buyers), (holdout, holdout_buyers) = sums["targets"], sums["holdout"]
    if targets and holdout:
        PROMO_UPLIFT.labels(reason).set(target_buyers / targets - holdout_buyers / holdout)
