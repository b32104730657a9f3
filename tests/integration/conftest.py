"""Integration fixtures: the real local Kafka broker and real worker processes.

The broker is started once per test session on free loopback ports (or, with
SALESCAST_TEST_BOOTSTRAP set, an existing one is used). Each worker gets its
own app id, topic names, state directory and ports, so tests cannot see each
other's records.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import jsonschema
import pytest
from kafka import KafkaConsumer, KafkaProducer

from salescast.stream.core.contract import SCHEMA_FILES, load_schema
from salescast.localkafka import LocalBroker, free_port

SHARED_SCHEMAS = Path(__file__).resolve().parents[3] / "shared" / "contract" / "schemas"


@pytest.fixture(scope="session")
def kafka(tmp_path_factory) -> str:
    existing = os.environ.get("SALESCAST_TEST_BOOTSTRAP")
    if existing:
        yield existing
        return
    broker = LocalBroker(directory=tmp_path_factory.mktemp("kafka"), port=free_port(pair=True))
    broker.start(log=lambda message: print(message, file=sys.stderr))
    yield broker.bootstrap
    broker.stop(log=lambda message: None)


def contract_schema(kind: str) -> dict:
    """The contract's own schema where ../shared is present (CI), else the project's copy."""
    shared = SHARED_SCHEMAS / SCHEMA_FILES[kind]
    return json.loads(shared.read_text()) if shared.exists() else load_schema(kind)


def assert_valid(kind: str, record: dict) -> None:
    jsonschema.validate(record, contract_schema(kind), cls=jsonschema.Draft202012Validator)


class Worker:
    """A `salescast worker` subprocess with its own topics and state."""

    def __init__(self, bootstrap: str, directory: Path, extra_env: dict | None = None):
        self.id = f"t{uuid.uuid4().hex[:8]}"
        self.directory = directory
        self.web_port, self.metrics_port = free_port(), free_port()
        self.topics = {key: f"{self.id}.{key.replace('_', '-')}" for key in
                       ("orders", "clicks", "inventory", "forecasts", "promo_triggers", "promo_outcomes",
                        "model_versions", "dead_letters")}
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SALESCAST_APP_ID": self.id,
                    "SALESCAST_DATA_DIR": str(directory / "var"), "SALESCAST_PARTITIONS": "4",
                    "SALESCAST_WEB_PORT": str(self.web_port), "SALESCAST_METRICS_PORT": str(self.metrics_port),
                    "SALESCAST_ADVERTISED_URL": f"http://127.0.0.1:{self.web_port}",
                    # a test's input partitions are mostly empty: each holds bucket close back this long
                    "SALESCAST_IDLE_TIMEOUT_MS": "3000",
                    **{f"SALESCAST_TOPIC_{key.upper()}": name for key, name in self.topics.items()},
                    **(extra_env or {})}
        self.bootstrap = bootstrap
        self.process: subprocess.Popen | None = None
        self.log_path = directory / "worker.log"

    def sibling(self, directory: Path) -> "Worker":
        """Another worker of the same app (same id and topics): the two share the partitions."""
        directory.mkdir(parents=True, exist_ok=True)
        other = Worker(self.bootstrap, directory)
        other.id, other.topics = self.id, self.topics
        other.env = {**self.env, "SALESCAST_DATA_DIR": str(directory / "var"),
                     "SALESCAST_WEB_PORT": str(other.web_port), "SALESCAST_METRICS_PORT": str(other.metrics_port),
                     "SALESCAST_ADVERTISED_URL": f"http://127.0.0.1:{other.web_port}"}
        return other

    def assigned(self, topic: str) -> set[int]:
        """Partitions of `topic` this worker consumes (from its consumer-lag gauge)."""
        prefix = f'salescast_consumer_lag{{partition="'
        found = set()
        for line in self.metrics().splitlines():
            if line.startswith(prefix) and f'topic="{topic}"' in line:
                found.add(int(line[len(prefix):].split('"')[0]))
        return found

    def start(self, timeout_s: float = 90.0) -> "Worker":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "salescast.cli", "worker", "--loglevel", "info"],
                                        env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.directory)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"worker exited early:\n{self.log_tail()}"
            status, _ = self.http("/healthz")
            if status == 200:
                return self
            time.sleep(0.3)
        raise AssertionError(f"worker not healthy within {timeout_s}s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def http(self, path: str) -> tuple[int, dict | None]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = error.read()
            return error.code, json.loads(body) if body else None
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()

    def metric(self, name: str, **labels) -> float:
        wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
        prefix = f"{name}{{{wanted}}}" if labels else name
        for line in self.metrics().splitlines():
            if line.startswith(prefix + " "):
                return float(line.split()[-1])
        return 0.0

    def producer(self) -> KafkaProducer:
        return KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=2)

    def read(self, key: str, until, timeout_s: float = 60.0) -> list:
        """Records of a topic from the start, polled until `until(records)` holds."""
        consumer = KafkaConsumer(self.topics[key], bootstrap_servers=self.bootstrap, auto_offset_reset="earliest",
                                 enable_auto_commit=False, consumer_timeout_ms=1000)
        records = []
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                for message in consumer:
                    records.append(message)
                if until(records):
                    return records
            raise AssertionError(f"{key}: condition not met within {timeout_s}s; got {len(records)} records\n"
                                 f"{self.log_tail()}")
        finally:
            consumer.close()


@pytest.fixture
def make_worker(kafka, tmp_path):
    workers = []

    def make(base: Worker | None = None, **extra_env) -> Worker:
        if base is not None:
            worker = base.sibling(tmp_path / f"sibling{len(workers)}")
        else:
            worker = Worker(kafka, tmp_path, {k: str(v) for k, v in extra_env.items()})
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.stop(signal.SIGKILL, timeout_s=10)


def wait_for(condition, timeout_s: float = 60.0, interval_s: float = 0.5, message: str = "condition"):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"{message} not met within {timeout_s}s (last: {last!r})")
