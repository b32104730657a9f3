"""`salescast demo`: the local broker, trained models, a worker and the generator, with output shown live.

Everything runs on this machine. When the model store lacks the LSTM, the
recommender or the promotion model, the demo first simulates the history of
another shop of the same kind (a different seed, so the models are not shown
the very days they will score) and trains on it with `salescast retrain
--events`. Forecasts are
printed as days close, promo triggers as they are decided and their outcomes
when they end (the generator's shop acts on the triggers: its targets see
the discount), and every few seconds a user's live recommendations and a
SKU's candidate users, from the worker's HTTP API. After --retrain-every
the demo also starts the retrainer (`salescast retrain --every`), which
retrains from the worker's own state; each new version is shown as it is
announced (candidate, then live or rejected against the live one), and the
forecast lines show the worker switching to it. Ctrl-C (or --seconds) stops
the retrainer, the generator, the worker and the broker in that order.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from salescast.localkafka import BrokerError, LocalBroker
from salescast.stream.core.settings import parse_duration_ms

RECOMMEND_EVERY_S = 5.0
RECOMMEND_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class DemoOptions:
    """The simulated shop the demo streams, how fast, and when the retrainer starts."""

    rate: float = 2000.0  # events/s
    speedup: float = 20000.0  # event time runs this much faster than the wall clock
    skus: int = 50
    users: int = 2000
    days: int = 120
    seed: int = 7
    seconds: float | None = None  # stop by itself after this long
    retrain_every: str = "2m"  # a duration, or 0/off for no retrainer
    port: int = 9092  # the local broker's


def _wait_healthy(port: int, worker: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError("the worker exited during start-up; see var/demo/worker.log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the worker did not become healthy in time; see var/demo/worker.log")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _line(forecast: dict) -> str:
    day = dt.datetime.fromtimestamp(forecast["ts"] / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    p50 = " ".join(f"{h['p50']:5.1f}" for h in forecast["horizon"])
    band = f"[{forecast['horizon'][0]['p10']:.1f}..{forecast['horizon'][0]['p90']:.1f}]"
    flag = " cold" if forecast.get("cold_start") else ""
    return f"{forecast['sku']:>10}  closed {day}  next p50: {p50}  first P10-P90 {band}  " \
           f"{forecast['model']['name']}:{forecast['model']['version']}{flag}"


def _promo_line(topic_kind: str, record: dict) -> str | None:
    """A trigger as it is emitted, an outcome when it is final; interim outcomes are not shown."""
    day = dt.datetime.fromtimestamp(record["ts"] / 1000, dt.timezone.utc).strftime("%Y-%m-%d")
    if topic_kind == "promo_triggers":
        return (f"{day} {'promo ' + record['sku']:>14}: {record['reason']}, {record['discount']:.0%} off to "
                f"{len(record['targets'])} users ({len(record['holdout'])} held out), "
                f"{record['expected_incremental_units']:+.1f} units expected, stock {record['on_hand']}")
    if not record.get("final"):
        return None
    uplift = "n/a" if record["uplift"] is None else f"{record['uplift']:+.2%}"
    return (f"{day} {'outcome ' + record['sku']:>14}: {record['target_buyers']}/{record['targets']} targets bought "
            f"vs {record['holdout_buyers']}/{record['holdout']} held out: uplift {uplift}")


def _model_line(record: dict) -> str:
    """A model-versions record as it is announced."""
    name, version, status = record["name"], record["version"], record["status"]
    judged = record["metrics"].get("vs_live") or {}
    if status == "candidate":
        return f"{'retrained ' + name:>30}: {version} is a candidate"
    if status == "live":
        why = f" ({judged['why']})" if judged else ""
        return f"{'retrained ' + name:>30}: {version} is live{why}; the worker switches to it"
    if status == "rejected":
        return f"{'retrained ' + name:>30}: {version} rejected ({judged.get('why')}); {judged.get('version')} stays live"
    return f"{'model ' + name:>30}: {version} is {status}"


def _recommendation_lines(port: int, user: str, sku: str) -> list[str]:
    lines = []
    for path, label in ((f"/recommendations/users/{user}?n=5", f"for {user}"),
                        (f"/recommendations/skus/{sku}/users?n=5", f"candidates for {sku}")):
        try:
            # a worker saturated by the generator answers late, not never: wait for it
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=RECOMMEND_TIMEOUT_S) as response:
                body = json.loads(response.read())
        except OSError as exc:
            lines.append(f"{'recommend ' + label:>30}: no answer from the worker ({exc})")
            continue
        items = " ".join(f"{item['id']}({item['score']:.2f})" for item in body["items"]) or "-"
        flag = " fallback" if body.get("fallback") else ""
        lines.append(f"{'recommend ' + label:>30}: {items}  {body['model']['name']}:{body['model']['version']}{flag}")
    return lines


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _train_if_needed(options: DemoOptions, env: dict, demo_dir: Path) -> None:
    from salescast.models.store import ModelStore
    from salescast.stream.serving.registry import KINDS, LSTM
    from salescast.stream.core.settings import Settings

    store = ModelStore(Settings.from_env(env).store.path)
    missing = [name for name in KINDS if store.current(name) is None]
    if not missing:
        print(f"using the {_listed(list(KINDS))} models already current in {store.root}", flush=True)
        return
    history = demo_dir / "history.jsonl"
    print(f"no {_listed(missing)} model yet: simulating {options.days} days of another {options.skus}-SKU shop "
          "and training "
          f"on it (about a minute; log: {demo_dir / 'retrain.log'}) ...", flush=True)
    with open(demo_dir / "retrain.log", "ab") as log:
        # the other shop runs promotions of its own more often: the price variation elasticities are read from
        commands = [["generate", "--skus", str(options.skus), "--users", str(options.users),
                     "--days", str(options.days),
                     "--seed", str(options.seed + 1000), "--promo-rate", "0.05", "--out", str(history)]]
        commands += [["retrain", "--events", str(history), "--epochs", "15", "--model", name] for name in missing]
        for command in commands:
            done = subprocess.run([sys.executable, "-m", "salescast.cli", *command], env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
            if done.returncode != 0:
                raise RuntimeError(f"`salescast {command[0]}` failed; see {demo_dir / 'retrain.log'}")
    for name in missing:
        print(f"trained {name} {store.current(name)}", flush=True)
    if LSTM in missing:
        print("SKUs get the LSTM once they have 28 days of history (until then: seasonal naive, marked cold)",
              flush=True)


def run_demo(options: DemoOptions) -> int:
    from kafka import KafkaConsumer

    from salescast.stream.core.settings import Settings

    retrain_after = None  # seconds after the generator starts; None: no retrainer
    if options.retrain_every not in ("0", "off"):
        try:
            retrain_after = parse_duration_ms(options.retrain_every) / 1000
        except ValueError as exc:
            print(f"salescast demo --retrain-every: {exc} (or 0 for no retrainer)", file=sys.stderr)
            return 2
    data_dir = Path(os.environ.get("SALESCAST_DATA_DIR", "./var")).resolve()
    demo_dir = data_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    broker = LocalBroker(directory=data_dir / "kafka", port=options.port)
    try:
        broker.start()
    except BrokerError as exc:
        print(f"salescast demo: {exc}", file=sys.stderr)
        return 1
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "SALESCAST_DATA_DIR": str(data_dir),
           "SALESCAST_APP_ID": os.environ.get("SALESCAST_APP_ID", "salescast-demo"),
           # the simulated shop's event time runs --speedup times the clock: it is the clock here
           "SALESCAST_CLOCK": "events",
           # a simulated day passes in seconds: a partition silent for 5 s holds nothing back
           "SALESCAST_IDLE_TIMEOUT_MS": os.environ.get("SALESCAST_IDLE_TIMEOUT_MS", "5000")}
    web_port = int(env.get("SALESCAST_WEB_PORT", "6066"))
    processes: list[subprocess.Popen] = []
    try:
        _train_if_needed(options, env, demo_dir)
        print(f"starting the worker (log: {demo_dir / 'worker.log'}) ...", flush=True)
        worker = subprocess.Popen([sys.executable, "-m", "salescast.cli", "worker", "--loglevel", "info"], env=env,
                                  stdout=open(demo_dir / "worker.log", "ab"), stderr=subprocess.STDOUT)
        processes.append(worker)
        _wait_healthy(web_port, worker)
        print(f"worker ready: http://localhost:{web_port}/skus/sku-1/sales  metrics: "
              f"http://localhost:{env.get('SALESCAST_METRICS_PORT', '9108')}/metrics", flush=True)
        generator = subprocess.Popen(
            [sys.executable, "-m", "salescast.cli", "generate", "--rate", str(options.rate), "--speedup",
             str(options.speedup), "--skus", str(options.skus), "--users", str(options.users),
             "--days", str(options.days),
             "--seed", str(options.seed), "--start", "now"],
            env=env, stdout=open(demo_dir / "generator.log", "ab"), stderr=subprocess.STDOUT)
        processes.append(generator)
        print(f"generating a {options.skus}-SKU shop at {options.rate:.0f} events/s, "
              f"event time x{options.speedup:.0f}; "
              f"forecasts follow as each day closes (Ctrl-C stops everything)\n", flush=True)
        settings = Settings.from_env(env)
        kinds = {settings.kafka.topic(kind): kind for kind in ("forecasts", "promo_triggers", "promo_outcomes",
                                                         "model_versions")}
        generator_started, retrainer = time.monotonic(), None
        consumer = KafkaConsumer(*kinds, bootstrap_servers=broker.bootstrap, auto_offset_reset="latest",
                                 consumer_timeout_ms=1000)
        deadline = time.monotonic() + options.seconds if options.seconds else None
        shown_at, turn = time.monotonic(), 0
        while deadline is None or time.monotonic() < deadline:
            for message in consumer:
                kind, record = kinds[message.topic], json.loads(message.value)
                if kind == "forecasts":
                    line = _line(record)
                else:
                    line = _model_line(record) if kind == "model_versions" else _promo_line(kind, record)
                if line:
                    print(line, flush=True)
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if time.monotonic() - shown_at >= RECOMMEND_EVERY_S:
                    break
            if time.monotonic() - shown_at >= RECOMMEND_EVERY_S:
                turn += 1
                user, sku = f"u-{turn * 37 % options.users}", f"sku-{turn % options.skus}"
                for line in _recommendation_lines(web_port, user, sku):
                    print(line, flush=True)
                shown_at = time.monotonic()
            if worker.poll() is not None:
                print(f"the worker stopped; see {demo_dir / 'worker.log'}:\n{_tail(demo_dir / 'worker.log')}",
                      file=sys.stderr)
                return 1
            if retrainer is None and retrain_after is not None and time.monotonic() - generator_started >= retrain_after:
                print(f"starting the retrainer: every {options.retrain_every} from the worker's state (log: "
                      f"{demo_dir / 'retrain.log'})", flush=True)
                retrainer = subprocess.Popen(
                    [sys.executable, "-m", "salescast.cli", "retrain", "--every", options.retrain_every, "--epochs",
                     "15", "--quiet"], env=env, stdout=open(demo_dir / "retrain.log", "ab"), stderr=subprocess.STDOUT)
                processes.append(retrainer)
            if generator.poll() not in (None, 0):  # it ends on its own (0) once its days are sent
                print(f"the generator failed (exit {generator.returncode}); see {demo_dir / 'generator.log'}:\n"
                      f"{_tail(demo_dir / 'generator.log')}", file=sys.stderr)
                return 1
        consumer.close()
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    except RuntimeError as exc:
        print(f"salescast demo: {exc}", file=sys.stderr)
        return 1
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
        broker.stop()
    return 0
