"""What the worker reads back when the consumer skipped records (salescast.stream.delivery.continuity), through the real broker."""

import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

from salescast.stream.core.settings import Settings
from salescast.stream.kafka import RangeReader, committed_offsets

pytestmark = pytest.mark.integration


def test_offset_ranges_and_committed_offsets_come_from_the_broker(kafka):
    topic, group = f"continuity-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all")
    for i in range(10):
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=1)
    producer.flush()
    producer.close()
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": kafka})

    reader = RangeReader(settings)
    try:
        assert [(r.offset, r.value) for r in reader.read(topic, 1, 3, 7)] == [(o, f"v{o}".encode())
                                                                              for o in range(3, 7)]
        assert [r.offset for r in reader.read(topic, 1, None, 2)] == [0, 1]  # from the start of the log
        assert [r.offset for r in reader.read(topic, 1, 9, 10)] == [9]  # the newest record
        assert [r.offset for r in reader.read(topic, 1, 2, 10, limit=1)] == [2]  # is there one, and where
        assert [r.key for r in reader.read(topic, 1, 0, 1)] == [b"k0"]  # the one consumer serves every range
    finally:
        reader.close()

    consumer = KafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False)
    consumer.assign([TopicPartition(topic, 1)])
    consumer.commit({TopicPartition(topic, 1): OffsetAndMetadata(6, "", -1)})
    consumer.close()
    assert committed_offsets(settings, group) == {(topic, 1): 6}
    assert committed_offsets(settings, f"{group}-never-committed") == {}
