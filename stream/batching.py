"""Sending an agent's batch of records to Kafka as one aiokafka batch per partition.

Faust's `send_soon` costs ~90 us a record (a FutureMessage, a trip through its
ProducerBuffer, one aiokafka `send()` each): measured with py-spy, it capped a
worker near 11,000 repartition records/s. aiokafka's `create_batch` /
`send_batch` build the record batch directly. The batches go through the same
aiokafka producer Faust owns, so Faust's flush-before-commit still covers
them: a record is on the broker before the offsets of its input are committed.

Only for the topics salescast's own partitioning decides: the internal
repartition topics and the tables' changelogs, all with SALESCAST_PARTITIONS
partitions and keyed with the default (murmur2) partitioner that Faust and the
tables use too.
"""

from __future__ import annotations

from collections import defaultdict

from aiokafka.partitioner import DefaultPartitioner

_partitioner = DefaultPartitioner()


class PartitionedBatches:
    def __init__(self, partitions: int):
        self.partitions = list(range(partitions))
        self._pending: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = defaultdict(list)

    def partition_for(self, key: bytes) -> int:
        return _partitioner(key, self.partitions, self.partitions)

    def add(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        if partition is None:
            partition = self.partition_for(key)
        self._pending[(topic, partition)].append((key, value))

    def __len__(self) -> int:
        return sum(len(records) for records in self._pending.values())

    async def flush(self, producer) -> None:
        """Hand everything to `producer` (an AIOKafkaProducer); returns once the producer accepted it."""
        for (topic, partition), records in self._pending.items():
            batch = producer.create_batch()
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: send, start another
                    await producer.send_batch(batch, topic, partition=partition)
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            await producer.send_batch(batch, topic, partition=partition)
        self._pending.clear()
