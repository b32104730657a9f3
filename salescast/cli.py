"""`salescast`: the one command a user runs. `salescast --help` lists the sub-commands."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

from salescast.stream.core.settings import Settings, SettingsError


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"salescast: {exc}")


def _connected_settings(command: str) -> Settings:
    """The settings, once a broker has taken a connection with them; else exit 1 with why, in one line
    (a refused password, an untrusted certificate, no broker)."""
    from salescast.stream.kafka import KafkaUnavailable, check_connection

    settings = _settings()
    try:
        check_connection(settings)
    except KafkaUnavailable as exc:
        print(f"salescast {command}: {exc}", file=sys.stderr)
        sys.exit(1)
    return settings


def _broker(args) -> "LocalBroker":
    from salescast.localkafka import LocalBroker

    directory = Path(args.dir) if args.dir else Path(os.environ.get("SALESCAST_DATA_DIR", "./var")) / "kafka"
    return LocalBroker(directory=directory.resolve(), port=args.port, secure=getattr(args, "secure", False))


def cmd_kafka(args) -> int:
    from salescast.localkafka import BrokerError

    broker = _broker(args)
    try:
        if args.action == "start":
            broker.start()
        elif args.action == "stop":
            broker.stop()
        else:
            print(broker.status())
    except BrokerError as exc:
        print(f"salescast kafka {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_config(args) -> int:
    """The settings as the environment gives them, validated, as JSON; secrets only as "<set>"."""
    print(json.dumps(_settings().described(), indent=2, sort_keys=True))
    return 0


def cmd_worker(args) -> int:
    settings = _settings()
    from salescast.stream import worker

    return worker.run(settings, args.loglevel)


def _start_ms(text: str) -> int:
    if text == "now":
        from salescast.models.timeunits import DAY_MS

        return int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000) // DAY_MS * DAY_MS
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


def cmd_generate(args) -> int:
    from salescast.sim.generator import Shop, ShopConfig, paced

    config = ShopConfig(seed=args.seed, skus=args.skus, users=args.users, days=args.days,
                        start_ms=_start_ms(args.start), closed_days=args.closed_days,
                        closed_weekday=args.closed_weekday, holidays=args.holidays,
                        **({} if args.promo_rate is None else {"promo_rate": args.promo_rate}))
    try:
        shop = Shop(config)
    except ValueError as exc:  # closed days outside --days, holidays that do not fit
        print(f"salescast generate: {exc}", file=sys.stderr)
        return 2
    count = 0
    if args.out:
        events = shop.events()
        import orjson

        with (sys.stdout.buffer if args.out == "-" else open(args.out, "wb")) as out:
            for topic, record in events:
                out.write(orjson.dumps({**record, "topic": topic}) + b"\n")
                count += 1
    else:
        settings = _connected_settings("generate")
        inbox = None if args.ignore_promotions else _promo_inbox(settings)
        count = _publish(paced(shop.events(inbox), args.rate, args.speedup), settings, args.limit)
    if args.truth:
        Path(args.truth).write_text(json.dumps(shop.ground_truth()))
    print(f"generated {count} events", file=sys.stderr)
    return 0


def _promo_inbox(settings: Settings):
    """The shop as a promo engine: promo-triggers from now on, collected by a background consumer and
    handed to the shop a day at a time (its targets then see the discount)."""
    import queue
    import threading

    import orjson
    from kafka import KafkaConsumer

    from salescast.stream.kafka import client_options, ensure_topics

    ensure_topics(settings)
    arrived: queue.Queue = queue.Queue()
    consumer = KafkaConsumer(settings.kafka.topic("promo_triggers"), auto_offset_reset="latest",
                             enable_auto_commit=False, **client_options(settings))

    def listen() -> None:
        for message in consumer:
            try:
                arrived.put(orjson.loads(message.value))
            except orjson.JSONDecodeError:
                continue

    threading.Thread(target=listen, name="promo-inbox", daemon=True).start()

    def drain() -> list[dict]:
        triggers = []
        while not arrived.empty():
            triggers.append(arrived.get_nowait())
        return triggers

    return drain


def _producer(settings: Settings, **tuning):
    """A kafka-python producer for the input topics (acks from all replicas), which it creates when missing."""
    from kafka import KafkaProducer

    from salescast.stream.kafka import client_options, ensure_topics

    ensure_topics(settings)
    return KafkaProducer(acks="all", **tuning, **client_options(settings))


def _publish(events, settings: Settings, limit: int | None) -> int:
    import itertools

    from salescast.backfill import close, encode, produce

    messages = (encode(number, topic, record) for number, (topic, record) in enumerate(events, 1))
    producer = _producer(settings, linger_ms=5)
    try:
        delivery = produce(itertools.islice(messages, limit) if limit else messages, producer, settings.kafka.topic)
    finally:
        close(producer)
    if delivery.failed:
        print(f"salescast generate: {len(delivery.failed)} events were not delivered, e.g. "
              f"{delivery.failed[0][1]}", file=sys.stderr)
    return delivery.sent_total


def cmd_backfill(args) -> int:
    from kafka.errors import KafkaError

    from salescast import backfill
    from salescast.stream.kafka import KafkaUnavailable

    settings = _connected_settings("backfill")
    tuning = dict(linger_ms=50, batch_size=512 * 1024)
    try:
        return backfill.run(args.file, settings, lambda: _producer(settings, **tuning), args.undelivered)
    except (KafkaUnavailable, KafkaError) as exc:
        print(f"salescast backfill: {exc}", file=sys.stderr)
        return 1


def cmd_replay(args) -> int:
    from salescast import replay

    settings = _settings()
    out = sys.stdout.buffer if args.out in (None, "-") else open(args.out, "wb")
    try:
        replay.run(args.file, out, settings)
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    return 0


def cmd_retrain(args) -> int:
    from salescast.stream.core.settings import parse_duration_ms
    from salescast.training.retrain import TrainOptions

    settings = _settings() if args.events else _connected_settings("retrain")  # without --events: the worker's state
    options = TrainOptions(input_length=args.input_length, min_history=args.min_history, units=tuple(args.units),
                           dense=args.dense,
                           epochs=args.epochs, max_samples=args.max_samples, seed=args.seed,
                           verbose=0 if args.quiet else 2)
    if args.every is None:
        return _retrain_once(settings, args.events, options, args.model)
    try:
        every_s = parse_duration_ms(args.every) / 1000
    except ValueError as exc:
        print(f"salescast retrain --every: {exc}", file=sys.stderr)
        return 2
    import time

    from salescast.training import metrics as retrain_metrics

    try:
        retrain_metrics.serve(settings.service.retrain_metrics_port)
    except OSError as exc:
        print(f"salescast retrain --every: cannot serve metrics on port {settings.service.retrain_metrics_port} ({exc}); "
              "set SALESCAST_RETRAIN_METRICS_PORT to a free port", file=sys.stderr)
        return 1
    print(f"retraining every {args.every}; metrics at http://localhost:{settings.service.retrain_metrics_port}/metrics",
          file=sys.stderr, flush=True)
    try:
        while True:  # a failed run is reported and the schedule goes on
            if _retrain_once(settings, args.events, options, args.model, retrain_metrics.observe) != 0:
                retrain_metrics.failed()
            print(f"next retraining in {args.every}", file=sys.stderr, flush=True)
            time.sleep(every_s)
    except KeyboardInterrupt:
        return 0


def _retrain_once(settings: Settings, events: str | None, options, model: str, observe=None) -> int:
    from salescast.models.store import ModelStoreError
    from salescast.stream.kafka import KafkaUnavailable
    from salescast.training.retrain import RetrainFailed, retrain

    failed = None
    try:
        records = retrain(settings, events, options, None if model == "all" else (model,))
    except RetrainFailed as exc:  # the other models' versions were published all the same
        records, failed = exc.records, exc
    except (ValueError, OSError, TimeoutError, ModelStoreError, KafkaUnavailable) as exc:
        print(f"salescast retrain: {exc}", file=sys.stderr)
        return 1
    if observe is not None:
        observe(records)
    for record in records:
        outcome = ("is now current; running workers switch to it" if record["status"] == "live" else
                   f"was {record['status']}: workers keep {record['metrics'].get('vs_live', {}).get('version')}")
        print(f"{record['name']} {record['version']} {outcome} ({settings.store.path}): {_holdout_summary(record)}",
              file=sys.stderr)
        print(json.dumps(record), flush=True)
    if failed is not None:
        print(f"salescast retrain: {failed}", file=sys.stderr)
        return 1
    return 0


def _holdout_summary(record: dict) -> str:
    from salescast.training.retrain import TRAINERS

    return TRAINERS[record["name"]].summary(record["metrics"])


SERVED_STALE_MS = 90_000  # three of a worker's served reports missed (stream.agents.housekeeping)
SERVED_FORGOTTEN_MS = 86_400_000  # a worker not heard from for a day is left out


def _served_lines(reports: list[dict], current: str | None, now_ms: float) -> list[str]:
    """What each worker reported it serves, for `models list`: CURRENT is what they should serve."""
    lines = []
    for report in sorted(reports, key=lambda r: r.get("worker", "")):
        age_ms = now_ms - report.get("at", 0)
        if age_ms > SERVED_FORGOTTEN_MS:
            continue
        version = report.get("version")
        state = "current" if version == current else "NOT current"
        line = f"served by {report.get('worker')}: {version} ({state}), reported {age_ms / 1000:.0f} s ago"
        if age_ms > SERVED_STALE_MS:
            line += " (no report since: stopped?)"
        refused = report.get("refused")
        if refused:
            line += f"; refused {refused.get('version')}: {refused.get('reason')}"
        lines.append(line)
    return lines


def cmd_models(args) -> int:
    """`salescast models list|release|rollback`: the model store, for people."""
    from salescast.models.store import ModelStore, ModelStoreError
    from salescast.stream.serving.registry import KINDS, Refused, load_version
    from salescast.training.retrain import announce

    settings = _settings()
    store = ModelStore(settings.store.path)

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    if args.action == "list":
        names = [args.name] if args.name else list(KINDS)
        width = max(map(len, KINDS))
        shown = 0
        for name in names:
            current = store.current(name)
            for version in store.versions(name):
                manifest = store.manifest(name, version)
                created = dt.datetime.fromtimestamp(manifest["created_at"] / 1000, dt.timezone.utc)
                marker = "*" if version == current else " "
                print(f"{marker} {name:<{width}} {version}  {manifest['status']:<9} {created:%Y-%m-%d %H:%M}  "
                      f"{_holdout_summary(manifest)}")
                shown += 1
            for line in _served_lines(store.served(name), current, time.time() * 1000):
                print(f"  {name:<{width}} {line}")
        if not shown:
            print(f"no model versions in {store.root} yet: `salescast retrain` trains them", file=sys.stderr)
        return 0
    try:
        if args.action in ("release", "promote"):
            if args.version not in store.versions(args.name):
                raise ModelStoreError(f"no {args.name} version {args.version} in {store.root / args.name}; "
                                      f"`salescast models list {args.name}` shows the versions there")
            load_version(store, args.name, args.version, settings)  # what a worker checks before it serves one
            store.set_current(args.name, args.version)
            version = args.version
        else:
            version = store.rollback(args.name)
    except (ModelStoreError, Refused) as exc:
        print(f"salescast models {args.action}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.name} {version} is now current in {store.root}", file=sys.stderr)
    print(json.dumps(announce(settings, store.manifest(args.name, version), log)), flush=True)
    return 0


def _options(options_type, args):
    """The typed options of a library function from the parsed arguments: an argument left unset (None)
    takes the function's own default."""
    return options_type(**{field.name: getattr(args, field.name) for field in dataclasses.fields(options_type)
                           if getattr(args, field.name, None) is not None})


def cmd_evaluate(args) -> int:
    if args.cf:
        from salescast.evaluation import recommender as evaluation

        options = _options(evaluation.RecommenderEvaluation, args)
    elif args.promo:
        from salescast.evaluation import promotions as evaluation

        options = _options(evaluation.PromotionEvaluation, args)
    else:
        from salescast.evaluation import forecast as evaluation

        options = _options(evaluation.ForecastEvaluation, args)
    return evaluation.run(options, _settings())


def cmd_demo(args) -> int:
    from salescast.demo import DemoOptions, run_demo

    return run_demo(_options(DemoOptions, args))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="salescast", description="Real-time sales forecasting and promotions on Kafka.")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config = commands.add_parser("config", help="the settings the environment gives, validated, as JSON "
                                                 "(secrets shown only as set)")
    config.set_defaults(func=cmd_config)

    worker = commands.add_parser("worker", help="the streaming worker (Faust): consumes, keeps state, scores, emits")
    worker.add_argument("--loglevel", default="warning", help="Faust log level (default warning)")
    worker.set_defaults(func=cmd_worker)

    generate = commands.add_parser("generate", help="synthetic shop events to Kafka or to a file")
    generate.add_argument("--seed", type=int, default=7)
    generate.add_argument("--skus", type=int, default=200)
    generate.add_argument("--users", type=int, default=5000)
    generate.add_argument("--days", type=int, default=90)
    generate.add_argument("--ignore-promotions", action="store_true",
                          help="to Kafka, the shop acts on the promo triggers it reads (its targets see the "
                               "discount); with this it does not")
    generate.add_argument("--promo-rate", type=float, default=None,
                          help="chance per SKU per day that the shop starts a promotion of its own (default 0.01)")
    generate.add_argument("--start", default="2025-10-09", help="first day (YYYY-MM-DD, UTC) or 'now'")
    generate.add_argument("--rate", type=float, default=None, help="events per second to Kafka (default: unpaced)")
    generate.add_argument("--speedup", type=float, default=None,
                          help="event time runs this many times faster than the clock")
    generate.add_argument("--limit", type=int, default=None, help="stop after this many events")
    generate.add_argument("--out", help="write JSON lines in the replay format to FILE ('-' for stdout) instead")
    generate.add_argument("--truth", help="write the ground truth (preferences, elasticities, closed days) to "
                          "FILE as JSON")
    generate.add_argument("--closed-days", type=_days, default=(), metavar="DAYS",
                          help="days the shop is closed (no event at all), counted from 0 = the --start day: a "
                               "comma-separated list of days and inclusive ranges, e.g. 5,6,40-49")
    generate.add_argument("--closed-weekday", type=_weekday, default=None, metavar="DAY",
                          help="the shop is also closed every week on this weekday (UTC): 0 (Monday) to 6 "
                               "(Sunday), or a name such as sun")
    generate.add_argument("--holidays", type=int, default=0, metavar="N",
                          help="the shop is also closed N times for 2 to 10 days in a row, on days drawn from "
                               "--seed (default 0)")
    generate.set_defaults(func=cmd_generate)

    rep = commands.add_parser("replay", help="the same pipeline over an events file, no Kafka")
    rep.add_argument("file", help="JSON lines with a 'topic' field; '-' reads standard input")
    rep.add_argument("--out", help="write output records here instead of standard output")
    rep.set_defaults(func=cmd_replay)

    backfill = commands.add_parser(
        "backfill", help="load a shop's history (an events file) into the running service through Kafka",
        description="Produce every record of an events file (the replay format: JSON lines, each an input record "
                    "with a \"topic\" field) to its input topic, in ts order (ties in file order), without the "
                    "\"topic\" field, keyed as the contract suggests (orders by order_id, clicks by user_id, "
                    "inventory by sku), and wait for every delivery. Lines that are not JSON or name no known "
                    "topic are skipped and reported by line number; other invalid records are sent, and the "
                    "worker dead-letters them. Progress goes to standard error, a summary line to standard "
                    "output. Exit status 1 when any record was not delivered: those are written to a file to be "
                    "sent again.")
    backfill.add_argument("file", help="JSON lines with a 'topic' field; '-' reads standard input")
    backfill.add_argument("--undelivered", metavar="FILE",
                          help="where to write the records that were not delivered, if any (default "
                               "FILE.undelivered.jsonl, or backfill-undelivered.jsonl for standard input)")
    backfill.set_defaults(func=cmd_backfill)

    retrain = commands.add_parser("retrain", help="train new model versions now and make them current")
    retrain.add_argument("--events", help="train from this events file (the replay format) instead of the "
                         "worker's tables in Kafka")
    retrain.add_argument("--model", choices=_KindNames("all"), default="all", metavar="MODEL",
                         help="which model kind to train, one of %(choices)s (default all)")
    _training_options(retrain)
    retrain.add_argument("--units", type=int, nargs="+", default=[32, 32], help="LSTM layer sizes (default 32 32)")
    retrain.add_argument("--dense", type=int, default=32, help="dense layer size (default 32)")
    retrain.add_argument("--max-samples", type=int, default=120_000,
                         help="train on at most this many windows, drawn at random (default 120000)")
    retrain.add_argument("--every", metavar="DURATION", help="keep retraining on this schedule, e.g. 6h or 1d")
    retrain.set_defaults(func=cmd_retrain)

    evaluate = commands.add_parser("evaluate", help="backtest the LSTM (or, with --cf, the recommender) "
                                   "against baselines on held-out time; --promo: promotions in a simulated shop")
    mode = evaluate.add_mutually_exclusive_group()
    mode.add_argument("--cf", action="store_true",
                      help="judge the recommender instead: precision/recall/NDCG@10 against popularity")
    mode.add_argument("--promo", action="store_true",
                      help="judge promotions instead: a closed loop with the synthetic shop, against its truth")
    source = evaluate.add_mutually_exclusive_group()
    source.add_argument("--events", help="an events file (the replay format)")
    source.add_argument("--public", choices=("wineind", "pizzaplace", "movielens-daily", "bank-calls", "elecdaily",
                                             "orange-juice", "movielens", "instacart"),
                        help="a public data set instead: wineind (monthly wine sales), pizzaplace (a pizza "
                             "shop's year, closed days included), movielens-daily (films' daily sales: intermittent), "
                             "bank-calls (a call centre's daily calls), elecdaily (daily electricity demand), "
                             "orange-juice (weekly scanner sales with discounts); with "
                             "--cf, movielens (ratings) or instacart (grocery purchases)")
    evaluate.add_argument("--users", type=int, default=None,
                          help="synthetic shop users (default 5000 with --cf, 20000 with --promo)")
    evaluate.add_argument("--skus", type=int, default=300, help="synthetic shop size when no data is given")
    evaluate.add_argument("--days", type=int, default=None, help="simulated days (default 365; 90 with --promo)")
    evaluate.add_argument("--warmup", type=int, default=45,
                          help="with --promo: days of history before the first promotion (default 45)")
    evaluate.add_argument("--origins", type=int, default=4, help="rolling origins, one horizon apart (default 4)")
    evaluate.add_argument("--calendar", choices=("closures", "holidays", "none"), default="closures",
                          help="the LSTM's calendar input: the closures seen in the history (default), those and the "
                               "public holidays (of the public set's country, else SALESCAST_HOLIDAYS_COUNTRY), or "
                               "none (the inputs of models before the calendar)")
    evaluate.add_argument("--no-price", dest="price", action="store_false", default=None,
                          help="leave out the discount depth (price paid against list price) as an input, as models "
                               "before it")
    _training_options(evaluate)
    evaluate.add_argument("--report", help="also write the Markdown table to FILE")
    evaluate.add_argument("--plot", default=None, help="PNG of forecasts vs actuals (default forecast-vs-actual.png"
                          "), or with --promo of incremental units and uplift (default promo-evaluation.png)")
    evaluate.set_defaults(func=cmd_evaluate)

    models = commands.add_parser("models", help="the model store: list the versions, release one, roll back")
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every version kept, newest last; * marks the current one")
    listing.add_argument("name", nargs="?", choices=_KindNames(), metavar="NAME", help="a model kind: %(choices)s")
    # `promote`: its name until "promote" came to mean marketing promotions only; kept for compatibility
    release = actions.add_parser("release", aliases=["promote"],
                                 help="make VERSION current (live) and announce it; `promote` is the same, kept "
                                      "for compatibility")
    release.add_argument("name", choices=_KindNames(), metavar="NAME", help="a model kind: %(choices)s")
    release.add_argument("version")
    rollback = actions.add_parser("rollback", help="make the version current before this one current again")
    rollback.add_argument("name", choices=_KindNames(), metavar="NAME", help="a model kind: %(choices)s")
    models.set_defaults(func=cmd_models)

    kafka = commands.add_parser("kafka", help="a local single-node Apache Kafka broker (KRaft)")
    kafka.add_argument("action", choices=("start", "stop", "status"))
    kafka.add_argument("--port", type=int, default=int(os.environ.get("SALESCAST_KAFKA_PORT", "9092")))
    kafka.add_argument("--dir", help="broker state directory (default $SALESCAST_DATA_DIR/kafka)")
    kafka.add_argument("--secure", action="store_true",
                       help="start: clients connect with SASL/SCRAM-SHA-512 over TLS (a CA and passwords are made "
                            "in DIR/credentials at the first start; the settings clients need are printed)")
    kafka.set_defaults(func=cmd_kafka)

    demo = commands.add_parser("demo", help="broker, worker and generator together, forecasts shown live")
    demo.add_argument("--rate", type=float, default=2000.0)
    demo.add_argument("--speedup", type=float, default=20000.0)
    demo.add_argument("--skus", type=int, default=50)
    demo.add_argument("--users", type=int, default=2000)
    demo.add_argument("--days", type=int, default=120)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--seconds", type=float, default=None, help="stop by itself after this long")
    demo.add_argument("--retrain-every", default="2m", metavar="DURATION",
                      help="start the retrainer after this long and retrain on that schedule (0: no retrainer)")
    demo.add_argument("--port", type=int, default=int(os.environ.get("SALESCAST_KAFKA_PORT", "9092")))
    demo.set_defaults(func=cmd_demo)
    return root


class _KindNames:
    """The model kinds (salescast.stream.serving.registry.KINDS) as argparse choices, read only when a model
    command is parsed or its help shown: the registry imports the served models' code, seconds that
    `salescast --help` and the other commands need not wait."""

    def __init__(self, *extra: str) -> None:
        self.extra = extra

    def _names(self) -> list[str]:
        from salescast.stream.serving.registry import KINDS

        return [*self.extra, *KINDS]

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


def _days(text: str) -> tuple[int, ...]:
    from salescast.sim.generator import parse_days

    try:
        return parse_days(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _weekday(text: str) -> int:
    from salescast.sim.generator import parse_weekday

    try:
        return parse_weekday(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _training_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--input-length", type=int, default=28, help="buckets the LSTM reads (default 28)")
    command.add_argument("--min-history", type=int, default=14,
                         help="buckets of a SKU's history the LSTM needs, the rest of --input-length padded "
                              "(default 14); a shop needs this plus 3 horizons to train (5 weeks of days)")
    command.add_argument("--epochs", type=int, default=40, help="at most this many epochs (early stopping)")
    command.add_argument("--seed", type=int, default=7)
    command.add_argument("--quiet", action="store_true", help="no per-epoch progress")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
