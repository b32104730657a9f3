"""The write-behind table cache: reads once, writes each changed key once per write-back, never evicts a
changed value."""

from salescast.stream.delivery.cache import TableCache


class Store:
    def __init__(self, values=None):
        self.values = dict(values or {})
        self.reads = []
        self.writes = []

    def read(self, key):
        self.reads.append(key)
        return self.values.get(key)

    def write(self, key, value, origin):
        self.writes.append((key, value, origin))
        self.values[key] = value


def test_a_value_is_read_from_the_store_once_then_served_from_memory():
    store = Store({b"a": {"n": 1}})
    cache = TableCache(store.read, capacity=10)
    assert cache.get(b"a") == {"n": 1} and cache.get(b"a") == {"n": 1}
    assert cache.get(b"never") is None and cache.get(b"never") is None
    assert store.reads == [b"a", b"never", b"never"]  # an absent key is not remembered


def test_each_changed_key_is_written_once_per_write_back_with_its_latest_value_and_origin():
    store = Store()
    cache = TableCache(store.read, capacity=10)
    cache.put(b"a", {"n": 1}, "event-1")
    cache.put(b"a", {"n": 2}, "event-2")
    cache.put(b"b", {"n": 5}, "event-3")
    assert cache.changed == 2 and store.writes == []
    assert cache.write_back(store.write) == {b"a": "event-2", b"b": "event-3"}
    assert store.writes == [(b"a", {"n": 2}, "event-2"), (b"b", {"n": 5}, "event-3")]
    assert cache.changed == 0 and cache.write_back(store.write) == {}
    assert cache.get(b"a") == {"n": 2} and store.reads == []


def test_clean_values_are_evicted_least_recently_used_first_and_changed_ones_never():
    store = Store({k: {"k": k.decode()} for k in (b"a", b"b", b"c", b"d")})
    cache = TableCache(store.read, capacity=2)
    cache.put(b"x", {"n": 1}, "e")
    cache.put(b"y", {"n": 2}, "e")
    cache.get(b"a")  # over capacity, but both others changed: kept until written back
    assert cache.get(b"x") == {"n": 1} and cache.get(b"y") == {"n": 2}
    cache.write_back(store.write)  # now clean: the least recently used go
    store.reads.clear()
    cache.get(b"y")
    cache.get(b"b")
    cache.get(b"y")
    assert store.reads == [b"b"]
    cache.get(b"c")  # evicts b, the least recently used
    cache.get(b"b")
    assert store.reads == [b"b", b"c", b"b"]


def test_a_failed_write_back_leaves_its_values_changed_and_discard_spares_changed_values():
    store = Store({b"a": {"n": 1}})
    cache = TableCache(store.read, capacity=10)
    cache.put(b"b", {"n": 2}, "e1")
    written = cache.write_back(store.write)
    cache.put(b"b", {"n": 3}, "e2")
    cache.unwritten(written)  # the changelog records did not get out
    assert cache.write_back(store.write) == {b"b": "e2"}  # the latest value, once
    cache.get(b"a")
    store.values[b"a"] = {"n": 9}
    cache.discard(b"a")
    assert cache.get(b"a") == {"n": 9}
    cache.put(b"c", {"n": 4}, "e3")
    cache.discard(b"c")
    assert cache.get(b"c") == {"n": 4} and cache.changed == 1
    cache.forget()
    assert cache.changed == 0 and cache.get(b"c") is None


def test_eviction_takes_clean_values_only_however_many_changed_ones_are_queued_in_front():
    """A backfill of new keys: the cache full of changed values waiting for the write-back, each new key
    read then evicted again. Eviction must not look at the changed ones (it walked all of them each time)."""
    store = Store({f"new{i}".encode(): {"i": i} for i in range(1000)})
    cache = TableCache(store.read, capacity=100)
    for i in range(100):
        cache.put(f"changed{i}".encode(), {"n": i}, "e")
    for i in range(1000):
        assert cache.get(f"new{i}".encode()) == {"i": i}
    store.reads.clear()
    assert [cache.get(f"changed{i}".encode()) for i in range(100)] == [{"n": i} for i in range(100)]
    assert cache.get(b"new999") == {"i": 999}
    assert store.reads == [b"new999"]  # the changed ones kept, not one new key beyond the capacity
    written = cache.write_back(store.write)
    assert len(written) == 100
    cache.put(b"changed0", {"n": 1}, "e2")
    cache.unwritten(written)  # changed again, so never evicted, whatever comes in after
    for i in range(1000):
        cache.get(f"new{i}".encode())
    store.reads.clear()
    assert [cache.get(f"changed{i}".encode()) for i in range(1, 100)] == [{"n": i} for i in range(1, 100)]
    assert store.reads == [] and cache.changed == 100
    assert cache.write_back(store.write)[b"changed0"] == "e2"
