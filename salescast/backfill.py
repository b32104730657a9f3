"""`salescast backfill FILE`: a shop's history into a running service, through Kafka.

FILE is an events file in the replay format: JSON lines, each an input record
with a "topic" field (orders, clicks or inventory). Its records are taken in
`ts` order (stable: ties keep file order) and each is produced, without its
"topic", to the topic the settings name, keyed as the contract suggests:
orders by order_id, clicks by user_id, inventory by sku. A line that is not
JSON or names no known topic is skipped and reported by its line number
(from 1); a record that is JSON with a topic is sent even when it is otherwise
invalid: the worker dead-letters it, with the reason, as it does any record.

The pure part (`load`, `message_key`, `encode`) reads, sorts and keys; the
Kafka part is `produce`, which drives any producer with kafka-python's
`send`/`flush` and counts what the brokers acknowledged. `salescast generate`
produces through it too. Records that were not delivered are written to a
file in the replay format, so that only they can be sent again: sending the
whole file again would count the delivered ones twice.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import IO, Callable, Iterable, NamedTuple, Protocol

import orjson

from salescast.stream.core.contract import INPUT_KINDS, SUGGESTED_KEY_FIELD
from salescast.replay import parse
from salescast.stream.core.settings import Settings

PROGRESS_EVERY_S = 5.0
SKIPPED_SHOWN = 100  # skipped lines reported one by one; past this only counted
FAILED_LINES_SHOWN = 5  # line numbers named per delivery error
ERRORS_SHOWN = 5  # the most frequent delivery errors shown
CHECK_EVERY_S = 1.0  # count the completed deliveries this often while sending
STALL_S = 150.0  # no delivery for this long: give up (the producer's delivery timeout is 120 s)
CLOSE_TIMEOUT_S = 10.0


class Message(NamedTuple):
    line: int  # in the input, from 1
    kind: str  # orders, clicks or inventory
    key: bytes | None
    value: bytes  # the record as JSON, without its "topic"


@dataclass
class Skipped:
    line: int  # from 1
    reason: str  # not_json or schema (no known topic), as replay dead-letters it
    error: str


@dataclass
class Loaded:
    messages: list[Message]  # in ts order, ties in file order
    skipped: list[Skipped]

    def counts(self) -> Counter:
        return Counter(message.kind for message in self.messages)


def message_key(kind: str, record: dict) -> bytes | None:
    """The key the contract suggests (orders by order_id, clicks by user_id, inventory by sku); none when the
    record lacks it or it is not a string: the record is sent all the same, and the worker dead-letters it."""
    value = record.get(SUGGESTED_KEY_FIELD[kind])
    return value.encode() if isinstance(value, str) else None


def encode(line: int, kind: str, record: dict) -> Message:
    """One record as it goes to Kafka: its key, and its JSON without the "topic" field."""
    if "topic" in record:
        record = {name: value for name, value in record.items() if name != "topic"}
    return Message(line, kind, message_key(kind, record), orjson.dumps(record))


def load(lines: Iterable[bytes]) -> Loaded:
    """The records of an events file in the order they are sent, and the lines skipped (blank lines are neither).

    Lines are parsed and ordered as `salescast replay` does (records whose `ts` is not an integer first).
    """
    parsed = parse(lines)
    messages = [encode(number + 1, kind, record) for _, number, kind, record, _ in parsed.records]
    skipped = sorted((Skipped(number + 1, reason, error) for number, reason, error, _ in parsed.bad),
                     key=lambda item: item.line)
    return Loaded(messages, skipped)


class Producer(Protocol):
    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None): ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


@dataclass
class Delivery:
    """What became of the messages given to `produce`."""

    sent: Counter = field(default_factory=Counter)  # handed to the producer, by kind
    delivered: Counter = field(default_factory=Counter)  # acknowledged by the brokers, by kind
    failed: list[tuple[Message, str]] = field(default_factory=list)  # not delivered, with why
    taken: int = 0  # messages taken from the input: sent, or failed as they were sent (the rest were not)
    stopped: str | None = None  # why it stopped early: sending, or waiting for the deliveries

    @property
    def sent_total(self) -> int:
        return sum(self.sent.values())

    @property
    def delivered_total(self) -> int:
        return sum(self.delivered.values())


def produce(messages: Iterable[Message], producer: Producer, topic: Callable[[str], str],
            progress: Callable[[Delivery], None] | None = None, every_s: float = PROGRESS_EVERY_S,
            stall_s: float = STALL_S, clock: Callable[[], float] = time.monotonic) -> Delivery:
    """Send every message to `topic(kind)` as fast as the producer takes them, then wait for every delivery.

    An error the producer raises at once for one record (too large) fails that record; one that says the
    cluster is out of reach (a retriable error: no metadata) stops the sending, as does Ctrl-C. So does a
    stall: no delivery acknowledged for `stall_s` while some are due (kafka-python's idempotent producer
    waits for a broker that is gone for ever instead of timing its records out). Then what was sent is
    waited for, until it is all acknowledged or failed, or stalls; what stalled counts as failed.
    Deliveries are counted from the futures as they complete, oldest first (cheaper than a callback each).
    `progress` is called every `every_s`.
    """
    from kafka.errors import KafkaError

    delivery = Delivery()
    pending: deque = deque()  # (future, message), in the order sent
    moved = [clock()]  # when the oldest pending delivery last completed (or none was pending)

    def settle() -> bool:
        """Count the completed deliveries; False when they have stalled."""
        while pending and pending[0][0].is_done:
            future, message = pending.popleft()
            if future.exception is None:
                delivery.delivered[message.kind] += 1
            else:
                delivery.failed.append((message, _describe(future.exception)))
            moved[0] = clock()
        if not pending:
            moved[0] = clock()
        elif clock() - moved[0] > stall_s:
            delivery.stopped = f"no delivery acknowledged for {stall_s:.0f} s: the brokers seem out of reach"
            return False
        return True

    next_check = next_report = clock() + every_s
    try:
        for message in messages:
            try:
                future = producer.send(topic(message.kind), key=message.key, value=message.value)
            except KafkaError as exc:
                delivery.taken += 1
                delivery.failed.append((message, _describe(exc)))
                if getattr(exc, "retriable", False):
                    delivery.stopped = f"the producer gave up on line {message.line}: {_describe(exc)}"
                    break
                continue
            delivery.taken += 1
            delivery.sent[message.kind] += 1
            pending.append((future, message))
            if clock() >= next_check:
                next_check = clock() + CHECK_EVERY_S
                if not settle():
                    break
                if progress is not None and clock() >= next_report:
                    progress(delivery)
                    next_report = clock() + every_s
    except KeyboardInterrupt:  # what was sent is still waited for
        delivery.stopped = "interrupted (Ctrl-C)"
    try:
        while pending:
            try:
                producer.flush(timeout=min(every_s, stall_s))
            except KafkaError:  # not all completed yet
                pass
            if not settle():
                break
            if pending and progress is not None:
                progress(delivery)
    except KeyboardInterrupt:
        delivery.stopped = "interrupted (Ctrl-C) while waiting for the deliveries"
        settle()
    for future, message in pending:  # given up on: count those that completed behind the oldest all the same
        if not future.is_done:
            delivery.failed.append((message, f"not acknowledged ({delivery.stopped})"))
        elif future.exception is None:
            delivery.delivered[message.kind] += 1
        else:
            delivery.failed.append((message, _describe(future.exception)))
    return delivery


def close(producer) -> None:
    """Close a producer, not waiting for ever on deliveries `produce` gave up on."""
    from kafka.errors import KafkaError

    try:
        producer.close(timeout=CLOSE_TIMEOUT_S)
    except KafkaError:  # its flush timed out: abandon what it holds. kafka-python's close flushes first and
        sender = getattr(producer, "_sender", None)  # so never gets this far; stop its thread so that its
        if sender is not None:  # __del__ does not try (and fail) again at exit
            sender.force_close()
        producer._closed = True


def _describe(error: Exception) -> str:
    name, text = type(error).__name__, str(error)
    return text if name in text else f"{name}: {text}" if text else name  # kafka's errors name themselves


def _by_kind(counts: Counter) -> str:
    return ", ".join(f"{kind} {counts.get(kind, 0)}" for kind in INPUT_KINDS)


def run(path: str, settings: Settings, producer_factory: Callable[[], Producer],
        undelivered: str | None = None, out: IO[str] | None = None, err: IO[str] | None = None,
        every_s: float = PROGRESS_EVERY_S, clock: Callable[[], float] = time.monotonic) -> int:
    """The command: 0 when every record was delivered, 1 otherwise (what to do is said on `err`)."""
    out, err = out or sys.stdout, err or sys.stderr
    started = clock()
    try:
        source = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as exc:
        print(f"salescast backfill: cannot read {path}: {exc.strerror or exc}", file=err)
        return 1
    try:
        loaded = load(source)
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    for skipped in loaded.skipped[:SKIPPED_SHOWN]:
        print(f"backfill: line {skipped.line} skipped ({skipped.reason}): {skipped.error}", file=err)
    if len(loaded.skipped) > SKIPPED_SHOWN:
        print(f"backfill: {len(loaded.skipped) - SKIPPED_SHOWN} more lines skipped, after line "
              f"{loaded.skipped[SKIPPED_SHOWN - 1].line}", file=err)
    total = len(loaded.messages)
    print(f"backfill: read {total} records ({_by_kind(loaded.counts())}) from {'stdin' if path == '-' else path} "
          f"in {clock() - started:.1f} s; producing to {settings.kafka.bootstrap_servers}", file=err, flush=True)

    def report(delivery: Delivery) -> None:
        done = f"{delivery.delivered_total} delivered, {len(delivery.failed)} failed"
        if delivery.taken < total and not delivery.stopped:
            rate = delivery.sent_total / max(clock() - sending, 1e-9)
            print(f"backfill: {delivery.sent_total} of {total} records sent ({delivery.sent_total / total:.0%}, "
                  f"{rate:.0f}/s), {done}", file=err, flush=True)
        else:
            waiting = delivery.taken - delivery.delivered_total - len(delivery.failed)
            print(f"backfill: {delivery.taken} records sent, {done}, waiting for {waiting}", file=err, flush=True)

    delivery = Delivery()
    if loaded.messages:
        producer = producer_factory()
        sending = clock()
        try:
            delivery = produce(loaded.messages, producer, settings.kafka.topic, report, every_s, clock=clock)
        finally:
            close(producer)
    print(f"backfill: {delivery.delivered_total} records produced ({_by_kind(delivery.delivered)}), "
          f"{len(loaded.skipped)} lines skipped in {clock() - started:.1f} s", file=out, flush=True)
    left = [message for message, _ in delivery.failed] + loaded.messages[delivery.taken:]
    if not left:
        return 0
    _report_undelivered(delivery, left, path, undelivered, err)
    return 1


def _report_undelivered(delivery: Delivery, left: list[Message], path: str, undelivered: str | None,
                        err: IO[str]) -> None:
    """Which records were not delivered and why, and where they are kept to be sent again."""
    unsent = len(left) - len(delivery.failed)
    print(f"salescast backfill: {len(left)} records were not delivered "
          f"({_by_kind(Counter(message.kind for message in left))})", file=err)
    if delivery.stopped:
        print(f"  stopped: {delivery.stopped}" + (f"; {unsent} records were not sent" if unsent else ""), file=err)
    lines_by_error: dict[str, list[int]] = {}
    for message, error in delivery.failed:
        lines_by_error.setdefault(error, []).append(message.line)
    for error, lines in sorted(lines_by_error.items(), key=lambda item: -len(item[1]))[:ERRORS_SHOWN]:
        lines.sort()
        shown = ", ".join(map(str, lines[:FAILED_LINES_SHOWN])) + (", ..." if len(lines) > FAILED_LINES_SHOWN else "")
        print(f"  {len(lines)} failed: {error} (lines {shown})", file=err)
    if len(lines_by_error) > ERRORS_SHOWN:
        print(f"  and {len(lines_by_error) - ERRORS_SHOWN} more errors", file=err)
    left.sort(key=lambda message: message.line)
    target = undelivered or ("backfill-undelivered.jsonl" if path == "-" else f"{path}.undelivered.jsonl")
    try:
        with open(target, "wb") as file:
            for message in left:
                file.write(orjson.dumps({**orjson.loads(message.value), "topic": message.kind}) + b"\n")
    except OSError as exc:
        print(f"  cannot write them to {target} ({exc.strerror or exc}); their lines in the input: "
              f"{', '.join(str(message.line) for message in left)}. Once the brokers take writes again, send "
              "only those lines again.", file=err)
    else:
        print(f"  They are in {target}. Once the brokers take writes again, run `salescast backfill {target}` "
              "to send only those.", file=err)
    print("  Do not send the whole input again: the service would count the delivered records twice. Records "
          "that were on their way when a broker went away may have been written without an acknowledgement, and "
          "a record more than SALESCAST_ALLOWED_LATENESS_MS behind the newest one already in its partition is "
          "dead-lettered as late.", file=err)
