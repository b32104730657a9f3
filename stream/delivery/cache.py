"""A table's decoded values kept in memory and written behind: each changed key is encoded, stored and
sent to its changelog once per commit, not once per batch (Kafka Streams' record cache does the same).

Invariants (stream.delivery.writes keeps them with the I/O passed in here):

* every value changed by a batch is written back before that batch's offsets
  are committed (stream.delivery.offsets.commit_handled writes back first), so
  a crash loses only what the uncommitted records bring back when read again,
  and their input positions keep those from counting twice;
* a changed value is never evicted, only written back; a clean one is evicted
  least recently used first, so memory holds `capacity` values plus what
  changed since the last write-back;
* on a rebalance the cache is written back, then forgotten: another worker may
  own those keys next, and what it writes is read from the store again.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, TypeVar

Value = TypeVar("Value")


class TableCache(Generic[Value]):
    """`read(key)` loads a decoded value from the store (None: never written); `write(key, value, origin)`
    stores one and queues its changelog record, `origin` being what the agent handed `put` with it (the
    stream and an event of the key's partition)."""

    def __init__(self, read: Callable[[bytes], Value | None], capacity: int) -> None:
        self.read = read
        self.capacity = capacity
        self._values: dict[bytes, Value] = {}
        # the keys not changed since the last write-back, least recently used first: the only ones
        # eviction may take, so it never walks past changed keys (with 50,000 of them queued at the
        # front, every new key's eviction did, and a million new users went in at ~600 a second)
        self._clean: OrderedDict[bytes, None] = OrderedDict()
        self._changed: dict[bytes, object] = {}  # key -> origin of its latest change

    def get(self, key: bytes) -> Value | None:
        value = self._values.get(key)
        if value is not None:
            if key in self._clean:
                self._clean.move_to_end(key)
            return value
        value = self.read(key)
        if value is not None:
            self._values[key] = value
            self._clean[key] = None
            self._evict()
        return value

    def put(self, key: bytes, value: Value, origin: object) -> None:
        self._values[key] = value
        self._clean.pop(key, None)
        self._changed[key] = origin

    @property
    def changed(self) -> int:
        return len(self._changed)

    def write_back(self, write: Callable[[bytes, Value, object], None]) -> dict[bytes, object]:
        """Write every changed value; returns what was written (key -> origin), for `unwritten` should
        its changelog records fail to reach the broker."""
        written: dict[bytes, object] = {}
        for key, origin in list(self._changed.items()):
            write(key, self._values[key], origin)
            written[key] = origin
            del self._changed[key]
            self._clean[key] = None
        self._evict()
        return written

    def unwritten(self, written: dict[bytes, object]) -> None:
        """The write-back of `written` did not get out: they count as changed again (changed since: as is)."""
        for key, origin in written.items():
            if key in self._values:
                self._changed.setdefault(key, origin)
                self._clean.pop(key, None)

    def forget(self) -> None:
        """Drop every value, changed or not (after a write-back, or when what changed is to be read again)."""
        self._values.clear()
        self._clean.clear()
        self._changed.clear()

    def discard(self, key: bytes) -> None:
        """Read `key` from the store next time, unless it changed since the last write-back (an update that
        raised may have changed the value it was handed half-way)."""
        if key not in self._changed:
            self._values.pop(key, None)
            self._clean.pop(key, None)

    def _evict(self) -> None:
        excess = len(self._values) - self.capacity
        while excess > 0 and self._clean:
            key, _ = self._clean.popitem(last=False)
            del self._values[key]
            excess -= 1
