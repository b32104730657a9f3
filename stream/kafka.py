"""kafka-python at the edges of the worker and the tools: client options, topics, reading and publishing.

`client_options` is the one mapping of the security settings to Kafka client
options; Faust's credentials (`faust_credentials`) are made from it, so
kafka-python, aiokafka and Faust always connect the same way.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Iterable

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from salescast.stream.core.settings import Settings

COMPACTED = ("inventory", "model_versions")  # latest value per key is what matters


class KafkaUnavailable(RuntimeError):
    pass


def client_options(settings: Settings) -> dict:
    """Bootstrap servers and security as kafka-python options (aiokafka takes the same names)."""
    options: dict = {"bootstrap_servers": settings.kafka.bootstrap_servers.split(","),
                     "security_protocol": settings.kafka.security_protocol}
    if settings.kafka.sasl_mechanism:
        options.update(sasl_mechanism=settings.kafka.sasl_mechanism, sasl_plain_username=settings.kafka.sasl_username,
                       sasl_plain_password=settings.kafka.sasl_password)
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if getattr(settings.kafka, name):
            options[name] = getattr(settings.kafka, name)
    return options


def faust_credentials(settings: Settings):
    """`client_options` as Faust's broker credentials (Faust hands them to aiokafka)."""
    import faust
    from aiokafka.helpers import create_ssl_context

    options = client_options(settings)
    protocol = options["security_protocol"]
    ssl_context = None
    if protocol in ("SSL", "SASL_SSL"):
        ssl_context = create_ssl_context(cafile=options.get("ssl_cafile"), certfile=options.get("ssl_certfile"),
                                         keyfile=options.get("ssl_keyfile"))
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(username=options["sasl_plain_username"],
                                     password=options["sasl_plain_password"],
                                     mechanism=options["sasl_mechanism"], ssl_context=ssl_context)
    if ssl_context is not None:
        return faust.SSLCredentials(ssl_context)
    return None


def _bootstrap_addresses(settings: Settings) -> list[tuple[str, str, int]]:
    """(as written, host, port) of each bootstrap server; Settings has checked each is HOST:PORT."""
    addresses = []
    for server in settings.kafka.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        addresses.append((server.strip(), host.strip("[]") or "localhost", int(port)))
    return addresses


def check_connection(settings: Settings, timeout_s: float = 15.0) -> None:
    """One connection to the first bootstrap server that accepts one, with the configured security, or
    KafkaUnavailable saying what is wrong: kafka-python, which the admin and backfill clients use, reports
    a refused password or an untrusted certificate only as a timeout after 30 s of retries."""
    import ssl

    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed

    kafka = settings.kafka
    where = kafka.bootstrap_servers
    ssl_context = None
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        ssl_context = create_ssl_context(cafile=kafka.ssl_cafile, certfile=kafka.ssl_certfile,
                                         keyfile=kafka.ssl_keyfile)

    async def connect(host: str, port: int) -> None:
        connection = await create_conn(host, port, request_timeout_ms=int(timeout_s * 1000), ssl_context=ssl_context,
                                       security_protocol=kafka.security_protocol, sasl_mechanism=kafka.sasl_mechanism,
                                       sasl_plain_username=kafka.sasl_username, sasl_plain_password=kafka.sasl_password)
        connection.close()

    for server, host, port in _bootstrap_addresses(settings):
        try:
            asyncio.run(asyncio.wait_for(connect(host, port), timeout_s))
            return
        except SaslAuthenticationFailed:
            raise KafkaUnavailable(
                f"the broker at {server} refused the credentials of user {kafka.sasl_username!r} "
                f"({kafka.sasl_mechanism}): check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or their _FILE "
                "variants)") from None
        except ssl.SSLCertVerificationError as exc:
            raise KafkaUnavailable(
                f"the broker at {server} presented a certificate this client does not trust ({exc.verify_message}): "
                "set KAFKA_SSL_CAFILE to the CA that signed it") from None
        except ssl.SSLError as exc:
            raise KafkaUnavailable(f"the TLS handshake with {server} failed ({exc.reason or exc}): check "
                                   "KAFKA_SECURITY_PROTOCOL and the KAFKA_SSL_* files") from None
        except KafkaConnectionError as exc:
            if str(exc).endswith(" closed"):  # the broker hung up on the handshake, not "connection refused"
                raise KafkaUnavailable(
                    f"the broker at {server} closed the connection ({kafka.security_protocol}): it may expect "
                    "another KAFKA_SECURITY_PROTOCOL (TLS or SASL), or the client's credentials") from None
            continue
        except (OSError, asyncio.TimeoutError):
            continue
    raise KafkaUnavailable(f"no Kafka broker answers at {where}. Start one with `salescast kafka start`, or set "
                           "KAFKA_BOOTSTRAP_SERVERS to where yours runs.")


def admin_client(settings: Settings) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(client_id=f"{settings.kafka.app_id}-admin", request_timeout_ms=15000,
                                **client_options(settings))
    except KafkaError as exc:
        raise KafkaUnavailable(
            f"no Kafka broker answers at {settings.kafka.bootstrap_servers} ({exc}). Start one with "
            f"`salescast kafka start`, or set KAFKA_BOOTSTRAP_SERVERS to where yours runs.") from None


def ensure_topics(settings: Settings, extra: Iterable[tuple[str, int, bool]] = ()) -> list[str]:
    """Create any missing contract topic with SALESCAST_PARTITIONS partitions, and any missing `extra`
    (name, partitions, compacted) topic; returns those created."""
    specs = [(name, settings.kafka.partitions, key in COMPACTED) for key, name in settings.kafka.topics.items()]
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        wanted = []
        for name, partitions, compacted in [*specs, *extra]:
            if name in existing:
                continue
            config = {"cleanup.policy": "compact"} if compacted else {}
            wanted.append(NewTopic(name, partitions, settings.kafka.replication_factor, topic_configs=config))
        created = []
        for topic in wanted:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:
                raise KafkaUnavailable(f"could not create topic {topic.name!r}: {exc}") from exc
        return created
    finally:
        admin.close()


def reachable(settings: Settings, timeout_s: float = 2.0) -> bool:
    """Whether any bootstrap server accepts a TCP connection: a quick look before a client that waits 30 s."""
    import socket

    for _, host, port in _bootstrap_addresses(settings):
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


def read_latest(settings: Settings, topic: str, timeout_s: float = 30.0) -> dict[bytes, bytes] | None:
    """The latest value of every key of a (compacted) topic, read from the beginning to its end now.

    None when the topic does not exist; deleted keys (a null value) are left out.
    """
    records = read_all(settings, topic, timeout_s)
    if records is None:
        return None
    latest: dict[bytes, bytes | None] = {}
    for key, value in records:
        latest[key] = value
    return {key: value for key, value in latest.items() if key and value}


def read_all(settings: Settings, topic: str, timeout_s: float = 30.0) -> list[tuple[bytes, bytes]] | None:
    """Every (key, value) of a topic from the beginning to its end now, partition by partition; None when
    the topic does not exist."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(enable_auto_commit=False, consumer_timeout_ms=int(timeout_s * 1000),
                             **client_options(settings))
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return None
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)
        records: list[tuple[bytes, bytes]] = []
        remaining = {tp for tp in assigned if ends[tp] > 0}
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for tp, batch in consumer.poll(timeout_ms=500).items():
                records.extend((record.key, record.value) for record in batch)
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        if remaining:
            raise TimeoutError(f"reading {topic} took over {timeout_s:.0f}s; is the broker overloaded?")
    finally:
        consumer.close()
    return records


def committed_offsets(settings: Settings, group: str) -> dict:
    """The consumer group's committed offsets (the next offset to read), keyed by (topic, partition); a
    partition never committed is absent."""
    admin = admin_client(settings)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


class RangeReader:
    """Reads given offset ranges of topic partitions straight from the broker, with one kafka-python
    consumer kept open (a range is usually read in one fetch round trip).

    Thread-safe: calls are serialised, since a KafkaConsumer is not.
    """

    def __init__(self, settings: Settings, poll_ms: int = 200):
        self.settings = settings
        self.poll_ms = poll_ms
        self._consumer = None
        self._lock = threading.Lock()

    def read(self, topic: str, partition: int, start: int | None, end: int, limit: int | None = None,
             timeout_s: float = 30.0) -> list:
        """The records of `topic`/`partition` with offsets in [start, end), in offset order (kafka-python
        ConsumerRecords), the first `limit` of them if given; start None reads from the beginning of the
        log. Offsets with no record (compacted away, transaction markers) are simply absent. Raises
        TimeoutError when the broker does not answer."""
        from kafka import KafkaConsumer, TopicPartition

        with self._lock:
            if self._consumer is None:
                self._consumer = KafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest",
                                               **client_options(self.settings))
            consumer = self._consumer
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            if start is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, start)
            records = []
            deadline = time.monotonic() + timeout_s
            while consumer.position(tp) < end and (limit is None or len(records) < limit):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {topic}/{partition} offsets {start}..{end - 1} took over "
                                       f"{timeout_s:.0f}s; is the broker reachable?")
                for batch in consumer.poll(timeout_ms=self.poll_ms).values():
                    records.extend(record for record in batch if record.offset < end)
            return records if limit is None else records[:limit]

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


def publish_model_version(settings: Settings, record: dict) -> None:
    """The contract's model-versions record, keyed by model name (the topic is compacted)."""
    import orjson
    from kafka import KafkaProducer

    if not reachable(settings):
        raise KafkaUnavailable(f"no Kafka broker answers at {settings.kafka.bootstrap_servers}")
    ensure_topics(settings)
    producer = KafkaProducer(acks="all", **client_options(settings))
    try:
        producer.send(settings.kafka.topic("model_versions"), key=record["name"].encode(),
                      value=orjson.dumps(record)).get(timeout=30)
    except KafkaError as exc:
        raise KafkaUnavailable(f"could not publish to {settings.kafka.topic('model_versions')}: {exc}") from exc
    finally:
        producer.close()
