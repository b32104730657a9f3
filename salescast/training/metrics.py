"""Prometheus metrics of `salescast retrain --every`, from the model-version records each run returns.

The retrainer is a process of its own (it may run on another machine than
the workers), so it serves these on SALESCAST_RETRAIN_METRICS_PORT: how long
each model's retraining took, how much data it read, the candidate's and the
live version's scores on the same held-out data, and each run's outcome.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, start_http_server

# what each record's metrics hold about the data it was trained on, and the scores compared
DATA_SIZES = ("skus", "tested_skus", "train_windows", "users", "interactions", "rows")
SCORES = ("mase", "wape", "pinball", "ndcg@10", "precision@10")

RETRAIN_SECONDS = Gauge("salescast_retrain_seconds", "Duration of the last retraining, reading to publishing",
                        ["model"])
RETRAIN_DATA = Gauge("salescast_retrain_data", "Size of the data the last retraining read", ["model", "kind"])
RETRAIN_SCORE = Gauge("salescast_retrain_holdout_score",
                      "Holdout scores of the last candidate and of the live version on the same data",
                      ["model", "role", "metric"])
RETRAIN_RUNS = Counter("salescast_retrain_runs_total", "Trained versions by outcome (live, rejected)",
                       ["model", "status"])
RETRAIN_FAILURES = Counter("salescast_retrain_failures_total", "Retraining runs that failed (the log says why)")


def serve(port: int) -> None:
    start_http_server(port)


def observe(records: list[dict]) -> None:
    for record in records:
        name, metrics = record["name"], record["metrics"]
        RETRAIN_RUNS.labels(name, record["status"]).inc()
        if "retrain_seconds" in metrics:
            RETRAIN_SECONDS.labels(name).set(metrics["retrain_seconds"])
        for kind in DATA_SIZES:
            if isinstance(metrics.get(kind), (int, float)):
                RETRAIN_DATA.labels(name, kind).set(metrics[kind])
        live = metrics.get("vs_live") or {}
        for metric in SCORES:
            for role, scores in (("candidate", metrics), ("live", live)):
                if isinstance(scores.get(metric), (int, float)):
                    RETRAIN_SCORE.labels(name, role, metric).set(scores[metric])


def failed() -> None:
    RETRAIN_FAILURES.inc()
