"""How an agent's batch gets out: table values written with their changelog records, and dead letters.

Everything goes through the batch's Outbox and the producer Faust owns, which
Faust flushes before each offset commit: a record is either fully handled
(its table writes, outputs and dead letters on the broker) or read again
after a crash, where its updates are recognised by their input position
(salescast.models.positions) and not counted twice.
"""

from __future__ import annotations

from typing import Callable, Iterable, NamedTuple

import orjson

from salescast.stream import faust_fixes, metrics
from salescast.stream.app import app
from salescast.stream.core.contract import Source, dead_letter, dumps
from salescast.stream.core.state import updates_in
from salescast.stream.delivery.outbox import Outbox, partition_for
from salescast.stream.tables import ALL_TABLES
from salescast.stream.topics import DEAD_LETTERS


def producer():
    """The producer the outboxes flush into (replaced by a fake in the agents' unit tests)."""
    return faust_fixes.aiokafka_producer(app)


def send_dead_letter(out: Outbox, key: bytes | None, record: dict) -> None:
    out.add(DEAD_LETTERS, key, dumps(record))
    metrics.DEAD_LETTERS.labels(record["reason"]).inc()


def processing_error(out: Outbox, message, exc: Exception, value: bytes | None = None) -> None:
    """A record that made processing raise: kept as a dead letter, never dropped, never fatal.

    `value`: the part of the record that raised (one update of a bundle), when not all of it did.
    """
    source = Source(message.topic, message.partition, message.offset)
    send_dead_letter(out, message.key, dead_letter(source, "processing_error", f"{type(exc).__name__}: {exc}",
                                                   message.value if value is None else value))


class KeyedUpdate(NamedTuple):
    key: bytes  # the table key
    wire: dict | list  # the update as it travelled (salescast.stream.core.state)
    event: object  # the Faust event of the record that carried it: the key's partition, for the store


def keyed_updates(events: Iterable, out: Outbox, key_field: str) -> list[KeyedUpdate]:
    """Every update the batch's internal records carry, with its table key: a bundle's updates name their
    key in `key_field`; a single-update record of the positional format before version 1 has it as its
    Kafka key. A record that cannot be read is a dead letter."""
    keyed = []
    for event in events:
        message = event.message
        try:
            keyed += [KeyedUpdate(wire[key_field].encode() if type(wire) is dict else message.key, wire, event)
                      for wire in updates_in(message.value)]
        except Exception as exc:  # noqa: BLE001 - a corrupt internal record is kept, never fatal
            processing_error(out, message, exc)
    return keyed


def load_value(table, key: bytes) -> dict | None:
    """A table value decoded, or None for a key never written."""
    raw = table.get(key)
    return None if raw is None else orjson.loads(raw)


_changelog_persisted = {table.name: faust_fixes.remember_changelog_offset(table) for table in ALL_TABLES}


def write(stream, table, key: bytes, value: dict, event, out: Outbox) -> None:
    """Store a table value and queue its changelog record: `table[key] = value` minus a Faust send per key.

    `event` must be an event of the key's own partition (the store files the write under it).
    """
    encoded = orjson.dumps(value)
    faust_fixes.store_in_event_partition(stream, table, key, encoded, event)
    out.add(table.changelog_topic.get_topic_name(), key, encoded, partition_for(key, table.partitions),
            on_sent=_changelog_persisted[table.name])


def apply_batch(stream, table, label: str, updates: Iterable[KeyedUpdate],
                apply: Callable[[dict | None, dict | list], tuple[dict, bool]], out: Outbox,
                before_write: Callable[[dict, Outbox], None] | None = None) -> dict[bytes, tuple[dict, object]]:
    """Apply a batch of keyed updates to `table`, reading and writing each key once.

    `before_write(touched, out)` may add to the new states before they are stored.
    Returns the keys written, with their new state and an event of their partition.
    """
    touched: dict[bytes, tuple[dict, object]] = {}
    applied = duplicates = 0
    for key, wire, event in updates:
        try:
            state = touched[key][0] if key in touched else load_value(table, key)
            state, changed = apply(state, wire)
        except Exception as exc:  # noqa: BLE001
            processing_error(out, event.message, exc, orjson.dumps(wire))
            continue
        if changed:
            applied += 1
        else:
            # Re-read after a crash: already counted. Written again all the same, because the
            # state on disk may be newer than the changelog (the crash came between the two),
            # and a worker that takes the partition over restores from the changelog.
            duplicates += 1
        touched[key] = (state, event)
    if before_write is not None and touched:
        before_write(touched, out)
    for key, (state, event) in touched.items():
        write(stream, table, key, state, event, out)
    metrics.UPDATES_APPLIED.labels(label).inc(applied)
    metrics.DUPLICATES_SKIPPED.labels(label).inc(duplicates)
    return touched
