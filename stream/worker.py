"""Starts a worker: the one entry point the command line uses into the Faust side of stream/."""

from __future__ import annotations

import sys

from salescast.stream.core.settings import Settings
from salescast.stream.kafka import KafkaUnavailable, ensure_topics


def run(settings: Settings, loglevel: str = "info") -> int:
    """Create the topics the worker needs, then run the Faust worker until it is stopped."""
    from salescast.stream.topics import worker_topics  # builds the app from the environment

    try:
        created = ensure_topics(settings, worker_topics())
    except KafkaUnavailable as exc:
        print(f"salescast worker: {exc}", file=sys.stderr)
        return 1
    if created:
        print(f"created topics: {', '.join(created)}", file=sys.stderr)
    (settings.service.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    from faust import Worker

    from salescast.stream import agents, views  # noqa: F401 - registers agents, tables and views on the app
    from salescast.stream import metrics
    from salescast.stream.app import app

    metrics.serve(settings.service.metrics_port)
    worker = Worker(app, loglevel=loglevel, quiet=True)
    # Faust's terminal spinner hooks a DEBUG handler onto the root logger, which turns every
    # aiokafka/faust debug call on the send path into a LogRecord: a tenth of the CPU, measured.
    worker.spinner = None
    worker.execute_from_commandline()
    return 0
