"""How an agent's batch gets out: table values written behind a cache with their changelog records, and
dead letters.

Everything goes through an Outbox and the producer Faust owns, which Faust
flushes before each offset commit, and the tables' changed values are written
back just before that (stream.delivery.offsets.commit_handled): a record is
either fully handled (its table writes, outputs and dead letters on the broker)
or read again after a crash, where its updates are recognised by their input
position (salescast.models.positions) and not counted twice.
"""

from __future__ import annotations

from typing import Callable, Iterable, NamedTuple

import orjson

from salescast.stream import faust_fixes, metrics
from salescast.stream.app import app, settings
from salescast.stream.core.contract import Source, dead_letter, dumps
from salescast.stream.core.state import updates_in
from salescast.stream.delivery.cache import TableCache
from salescast.stream.delivery.outbox import Outbox, partition_for
from salescast.stream.core.dedup import key_partition
from salescast.stream.tables import ALL_TABLES, order_ids
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


def _key_partition(table) -> Callable[[bytes], int]:
    """Where a key of `table` lives: where its events arrive (the default partitioner's pick), except for
    the order ledger, whose keys name their input partition."""
    if table is order_ids:
        return key_partition
    return lambda key: partition_for(key, table.partitions)


def _reader(table) -> Callable[[bytes], dict | None]:
    partition_of = _key_partition(table)

    def read(key: bytes) -> dict | None:
        """One lookup, in the key's own partition's store: `table.get` makes two (`key in`, then `[]`,
        since faust's Table defines __missing__), each of which, for a key not yet indexed, probes every
        partition's RocksDB."""
        raw = faust_fixes.read_in_partition(table, key, partition_of(key))
        return None if raw is None else orjson.loads(raw)

    return read


_caches = {table.name: TableCache(_reader(table), settings.service.state_cache_keys) for table in ALL_TABLES}
_changelog_persisted = {table.name: faust_fixes.remember_changelog_offset(table) for table in ALL_TABLES}


def load_value(table, key: bytes) -> dict | None:
    """A table value decoded, or None for a key never written (the worker's latest: from the cache)."""
    return _caches[table.name].get(key)


def write(stream, table, key: bytes, value: dict, event) -> None:
    """Set a table value: kept decoded in the table's cache, and stored with its changelog record at the
    next write-back (stream.delivery.cache), before the offsets of the batch that set it are committed.

    `event` must be an event of the key's own partition (the store files the write under it).
    """
    _caches[table.name].put(key, value, (stream, event))


def _store(table, out: Outbox) -> Callable[[bytes, dict, tuple], None]:
    changelog = table.changelog_topic.get_topic_name()
    on_sent = _changelog_persisted[table.name]
    partition_of = _key_partition(table)

    def store(key: bytes, value: dict, origin: tuple) -> None:
        """`table[key] = value` minus a Faust send per key: the store, and the changelog record queued."""
        stream, event = origin
        encoded = orjson.dumps(value)
        faust_fixes.store_in_event_partition(stream, table, key, encoded, event)
        out.add(changelog, key, encoded, partition_of(key), on_sent=on_sent)

    return store


async def write_back() -> None:
    """Every table's changed values into RocksDB and handed to the producer for their changelogs.

    Should the hand-over raise, they count as changed again, so a later
    write-back sends them before a later commit covers their batches.
    """
    out = Outbox()
    written = {table.name: _caches[table.name].write_back(_store(table, out)) for table in ALL_TABLES}
    try:
        await out.flush(producer())
    except BaseException:
        for name, values in written.items():
            _caches[name].unwritten(values)
        raise
    for name, values in written.items():
        metrics.STATE_WRITTEN_BACK.labels(name).inc(len(values))


async def write_back_when_full() -> None:
    """Between commits, when a table holds as many changed values as its cache's capacity."""
    if any(cache.changed >= cache.capacity for cache in _caches.values()):
        await write_back()


def forget_cached() -> None:
    """After a rebalance's write-back: the keys may be another worker's now, and are read again."""
    for cache in _caches.values():
        cache.forget()


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
            _caches[table.name].discard(key)
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
        write(stream, table, key, state, event)
    metrics.UPDATES_APPLIED.labels(label).inc(applied)
    metrics.DUPLICATES_SKIPPED.labels(label).inc(duplicates)
    return touched
