"""`salescast replay FILE`: the pipeline over an events file, no Kafka.

The same `engine` functions the agents call, with dicts for tables. Records are
taken in `ts` order (stable, so ties keep file order); a line that cannot be
parsed or names no known topic is dead-lettered where it stands. Dead letters
report partition 0 and the line's number (from 0) as the offset.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import IO, Iterable, Iterator

import orjson

from salescast.contract import Source, dead_letter
from salescast.engine import (BaselineForecaster, Forecaster, Ingestor, apply_sku_update, apply_user_update,
                              close_buckets)
from salescast.settings import Settings

TOPIC_KINDS = ("orders", "clicks", "inventory")


@dataclass
class ReplayState:
    """What a worker would hold in its tables, in memory."""

    windows: dict[str, dict] = field(default_factory=dict)
    vectors: dict[str, dict] = field(default_factory=dict)


@dataclass
class ReplayStats:
    dead_letters: int = 0
    forecasts: int = 0


def _parse(lines: Iterable[bytes]) -> tuple[list[tuple[int, int, str, dict, bytes]], list[dict]]:
    """Split lines into (ts, line number, kind, record, raw) to replay, and dead letters."""
    good, bad = [], []
    for number, raw in enumerate(lines):
        raw = raw.rstrip(b"\r\n")
        if not raw.strip():
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            bad.append(dead_letter(Source("replay", 0, number), "not_json", f"not valid UTF-8 JSON: {exc}", raw))
            continue
        kind = record.get("topic") if isinstance(record, dict) else None
        if kind not in TOPIC_KINDS:
            bad.append(dead_letter(Source("replay", 0, number), "schema",
                                   f"line needs a \"topic\" field, one of {', '.join(TOPIC_KINDS)}; got {kind!r}", raw))
            continue
        ts = record.get("ts")
        sort_ts = ts if isinstance(ts, int) and not isinstance(ts, bool) else -1
        good.append((sort_ts, number, kind, record, raw))
    good.sort(key=lambda item: (item[0], item[1]))
    return good, bad


def replay(lines: Iterable[bytes], settings: Settings, forecaster: Forecaster | None = None,
           state: ReplayState | None = None) -> Iterator[dict]:
    """Yields every record the service would emit, each with its "topic"."""
    forecaster = forecaster or BaselineForecaster(settings.season)
    state = state or ReplayState()
    forecasts_topic, dead_topic = settings.topic("forecasts"), settings.topic("dead_letters")
    ingestor = Ingestor(settings, {kind: kind for kind in TOPIC_KINDS})
    good, bad = _parse(lines)
    for record in bad:
        yield {"topic": dead_topic, **record}
    for sequence, (_, number, kind, record, raw) in enumerate(good):
        result = ingestor.ingest(kind, raw, 0, number, record=record, dedup_offset=sequence)
        if result.dead_letter is not None:
            yield {"topic": dead_topic, **result.dead_letter}
            continue
        if result.tick is not None:
            yield from _close(state, result.tick, settings, forecaster, forecasts_topic)
        for update in result.sku_updates:
            state.windows[update.sku], _ = apply_sku_update(state.windows.get(update.sku), update, settings)
        for update in result.user_updates:
            state.vectors[update.user], _ = apply_user_update(state.vectors.get(update.user), update, settings)
    if ingestor.watermark is not None:
        yield from _close(state, ingestor.watermark_bucket() + 1, settings, forecaster, forecasts_topic)


def build_state(lines: Iterable[bytes], settings: Settings, users: bool = False) -> tuple[ReplayState, int | None]:
    """The tables a worker would hold after an events file (for training); and the newest bucket seen.

    No forecasts are made; user vectors only with `users`. Keep
    `settings.history_buckets` at least the file's span to keep all of it.
    """
    state = ReplayState()
    ingestor = Ingestor(settings, {kind: kind for kind in TOPIC_KINDS})
    good, _ = _parse(lines)
    for sequence, (_, number, kind, record, raw) in enumerate(good):
        result = ingestor.ingest(kind, raw, 0, number, record=record, dedup_offset=sequence)
        for update in result.sku_updates:
            state.windows[update.sku], _ = apply_sku_update(state.windows.get(update.sku), update, settings)
        if users:
            for update in result.user_updates:
                state.vectors[update.user], _ = apply_user_update(state.vectors.get(update.user), update, settings)
    return state, ingestor.watermark_bucket()


def _close(state: ReplayState, watermark_bucket: int, settings: Settings, forecaster: Forecaster, topic: str):
    for closed in close_buckets(state.windows.items(), watermark_bucket, settings, forecaster):
        state.windows[closed.sku] = closed.window
        yield {"topic": topic, **closed.forecast}


def run(path: str, out: IO[bytes], settings: Settings, progress: IO[str] = sys.stderr) -> ReplayStats:
    stats = ReplayStats()
    started = time.monotonic()
    source = sys.stdin.buffer if path == "-" else open(path, "rb")
    try:
        for record in replay(source, settings):
            out.write(orjson.dumps(record) + b"\n")
            if record["topic"] == settings.topic("forecasts"):
                stats.forecasts += 1
            else:
                stats.dead_letters += 1
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    print(f"replay: {stats.forecasts} forecasts, {stats.dead_letters} dead letters "
          f"in {time.monotonic() - started:.1f}s", file=progress)
    return stats
