"""`salescast replay FILE`: the pipeline over an events file, no Kafka (salescast.stream.core.local).

Records are taken in `ts` order (stable, so ties keep file order); a line that
cannot be parsed or names no known topic is dead-lettered where it stands.
Dead letters report partition 0 and the line's number (from 0) as the offset.
The model store's current models serve, as in a worker, so the output is
what a worker emits for the same input.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import IO, Iterable, Iterator

import orjson

from salescast.stream.core.contract import INPUT_KINDS
from salescast.stream.core.local import Emitted, LocalPipeline
from salescast.stream.core.settings import Settings

PROGRESS_EVERY_S = 2.0


@dataclass
class Parsed:
    """An events file split into input records in `ts` order and lines that are no input record."""

    records: list[tuple[int, int, str, dict, bytes]]  # (ts, line number, kind, record, raw)
    bad: list[tuple[int, str, str, bytes]]  # (line number, reason, error, raw)


def parse(lines: Iterable[bytes]) -> Parsed:
    good, bad = [], []
    for number, raw in enumerate(lines):
        raw = raw.rstrip(b"\r\n")
        if not raw.strip():
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            bad.append((number, "not_json", f"not valid UTF-8 JSON: {exc}", raw))
            continue
        kind = record.get("topic") if isinstance(record, dict) else None
        if kind not in INPUT_KINDS:
            bad.append((number, "schema",
                        f"line needs a \"topic\" field, one of {', '.join(INPUT_KINDS)}; got {kind!r}", raw))
            continue
        ts = record.get("ts")
        sort_ts = ts if isinstance(ts, int) and not isinstance(ts, bool) else -1
        good.append((sort_ts, number, kind, record, raw))
    good.sort(key=lambda item: (item[0], item[1]))
    return Parsed(good, bad)


def run_pipeline(parsed: Parsed, pipeline: LocalPipeline,
                 progress: "Progress | None" = None) -> Iterator[Emitted]:
    """Everything the pipeline emits for the parsed file, the end of the input included."""
    for number, reason, error, raw in parsed.bad:
        yield pipeline.dead_letter_line(number, reason, error, raw)
    for done, (_, number, kind, record, raw) in enumerate(parsed.records):
        yield from pipeline.feed(kind, raw, record=record, offset=number)
        if progress is not None:
            progress.update(done + 1)
    yield from pipeline.finish()


def replay(lines: Iterable[bytes], settings: Settings, pipeline: LocalPipeline | None = None) -> Iterator[dict]:
    """Yields every record the service would emit, each with its "topic" (the topic's configured name).

    Without a `pipeline`, the model store's current models serve.
    """
    pipeline = pipeline or LocalPipeline.serving(settings)
    for emitted in run_pipeline(parse(lines), pipeline):
        yield {"topic": settings.kafka.topic(emitted.topic), **emitted.record}


def build_state(lines: Iterable[bytes], settings: Settings, users: bool = False) -> tuple[LocalPipeline, int | None]:
    """The tables a worker would hold after an events file (for training), and the newest bucket seen.

    No forecasts are made; user vectors only with `users`. Keep
    `settings.forecasting.history_buckets` at least the file's span to keep all of it.
    """
    pipeline = LocalPipeline(settings, users=users, closing=False)
    for _ in run_pipeline(parse(lines), pipeline):
        pass
    return pipeline, pipeline.ingestor.watermark_bucket()


class Progress:
    """A progress line on standard error: a bar on a terminal, a line every few seconds elsewhere."""

    def __init__(self, total: int, stream: IO[str], counts) -> None:
        self.total, self.stream, self.counts = total, stream, counts
        self.started = self._last = time.monotonic()
        self.tty = stream.isatty() if hasattr(stream, "isatty") else False

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last < (PROGRESS_EVERY_S if self.tty else 5 * PROGRESS_EVERY_S):
            return
        self._last = now
        share = done / max(1, self.total)
        bar = "#" * int(share * 30)
        line = (f"replay [{bar:<30}] {share:6.1%} {done:,}/{self.total:,} records, "
                f"{self.counts.forecasts:,} forecasts, {self.counts.dead_letters:,} dead letters, {now - self.started:.0f}s")
        self.stream.write(f"\r{line}" if self.tty else f"{line}\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty and time.monotonic() - self.started >= PROGRESS_EVERY_S:
            self.stream.write("\n")


def run(path: str, out: IO[bytes], settings: Settings, progress: IO[str] = sys.stderr,
        pipeline: LocalPipeline | None = None) -> LocalPipeline:
    """`salescast replay`: the output as JSON lines into `out`, progress and a summary on `progress`."""
    started = time.monotonic()
    source = sys.stdin.buffer if path == "-" else open(path, "rb")
    try:
        parsed = parse(source)
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    pipeline = pipeline or LocalPipeline.serving(settings)
    bar = Progress(len(parsed.records), progress, pipeline.counts)
    for emitted in run_pipeline(parsed, pipeline, bar):
        out.write(orjson.dumps({"topic": settings.kafka.topic(emitted.topic), **emitted.record}) + b"\n")
    bar.done()
    counts = pipeline.counts
    print(f"replay: {counts.records:,} records in, {counts.forecasts:,} forecasts, {counts.triggers:,} promo "
          f"triggers, {counts.outcomes:,} promo outcomes, {counts.dead_letters:,} dead letters, "
          f"{counts.duplicate_orders:,} duplicate orders "
          f"in {time.monotonic() - started:.1f}s (forecaster {pipeline.forecaster.name} "
          f"{pipeline.forecaster.version})", file=progress)
    return pipeline
