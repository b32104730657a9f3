"""Starts a worker: the one entry point the command line uses into the Faust side of stream/."""

from __future__ import annotations

import fcntl
import gc
import os
import sys
from pathlib import Path
from typing import IO

from salescast.stream.core.settings import Settings
from salescast.stream.kafka import KafkaUnavailable, check_connection, ensure_topics


class DataDirInUse(Exception):
    """Another live process holds the data directory."""


def hold_data_dir(data_dir: Path) -> IO:
    """Holds `data_dir` for this process until the returned file is closed or the process ends (kill -9
    included: the kernel drops the lock).

    RocksDB lets one process open a database, and a second worker on the same
    directory died deep in Faust's table recovery with a lock traceback.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / "worker.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise DataDirInUse(f"another worker (pid {holder}) is using SALESCAST_DATA_DIR={data_dir}: give each "
                           "worker on this machine its own SALESCAST_DATA_DIR") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


# CPython's defaults (700, 10, 10) run a young collection every 700 container allocations, and a full one
# whenever the survivors since the last grew by a quarter of the heap. A worker's heap is large and long-lived
# (TensorFlow, the tables' write-behind caches: millions of objects) and its churn is high (decoded records,
# updates, futures), so with the defaults full collections walked all of it every few seconds, a quarter of
# the worker's CPU (docs/benchmarks.md). Rarer collections let short-lived objects die uncollected first.
# Invariant: the state and the updates hold no reference cycles (decoded JSON; tested in
# tests/stream/core/test_state.py), so reference counting frees them and only the libraries' rare cycles wait
# longer. The same choice for the same reason: "Dismissing Python Garbage Collection at Instagram" (2017).
GC_THRESHOLDS = (50_000, 20, 100)


def run(settings: Settings, loglevel: str = "info") -> int:
    """Create the topics the worker needs, then run the Faust worker until it is stopped."""
    try:
        held = hold_data_dir(settings.service.data_dir)  # noqa: F841 - held for as long as the worker runs
    except DataDirInUse as exc:
        print(f"salescast worker: {exc}", file=sys.stderr)
        return 1
    from salescast.stream.topics import worker_topics  # builds the app from the environment

    try:
        check_connection(settings)
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
    from salescast.stream.delivery.outbox import DELIVERIES

    metrics.serve(settings.service.metrics_port)
    gc.set_threshold(*GC_THRESHOLDS)
    worker = Worker(app, loglevel=loglevel, quiet=True)
    # Faust's terminal spinner hooks a DEBUG handler onto the root logger, which turns every
    # aiokafka/faust debug call on the send path into a LogRecord: a tenth of the CPU, measured.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as stopped:
        code = stopped.code
    else:
        code = 0
    if DELIVERIES.failure is not None:  # the stop stream.delivery.offsets asked for: not a clean one
        print(f"salescast worker: {DELIVERIES.failure}", file=sys.stderr)
        return 1
    return code if isinstance(code, int) else (0 if code is None else 1)
