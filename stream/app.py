"""The Faust app, configured from `Settings` (the environment), nothing else."""

from __future__ import annotations

from collections import defaultdict
from typing import Awaitable, Callable

import faust
from aiokafka.helpers import create_ssl_context
from faust.transport.drivers import aiokafka as faust_kafka

from salescast.stream.core.settings import Settings

settings = Settings.from_env()


def _credentials(settings: Settings):
    """SASL/SSL settings as Faust credentials (aiokafka gets them from these)."""
    ssl_context = None
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        ssl_context = create_ssl_context(cafile=settings.ssl_cafile, certfile=settings.ssl_certfile,
                                         keyfile=settings.ssl_keyfile)
    if settings.security_protocol.startswith("SASL"):
        if settings.sasl_mechanism == "PLAIN":
            return faust.SASLCredentials(username=settings.sasl_username, password=settings.sasl_password,
                                         ssl_context=ssl_context)
        return faust.SASLCredentials(username=settings.sasl_username, password=settings.sasl_password,
                                     mechanism=settings.sasl_mechanism, ssl_context=ssl_context)
    if ssl_context is not None:
        return faust.SSLCredentials(ssl_context)
    return None


class _ReadOffsets(defaultdict):
    """Faust's last offset delivered per partition, forgotten for the agents' own topics.

    Faust's fetch loop drops a record at or below that offset as already read. Around a recovery
    the offset is set by records fetched before the stream partitions are sought back to their
    committed offsets, so the records read again from there are all dropped: up to ~1,500 per
    partition in a worker restarted mid-stream, to the very end of the partition at times, where no
    later record shows the gap (faust-streaming issue 596). The agents' topics need no such filter:
    salescast.stream.delivery.continuity keeps them in order, and the tables skip re-read records by their position.
    """

    def __init__(self, unfiltered_topics: set[str]) -> None:
        super().__init__(lambda: None)
        self.unfiltered_topics = unfiltered_topics

    def __getitem__(self, tp):
        return None if tp.topic in self.unfiltered_topics else super().__getitem__(tp)


class _Consumer(faust_kafka.Consumer):
    def _reset_state(self) -> None:
        super()._reset_state()
        self._read_offset = _ReadOffsets(self.app.agent_topic_names)


class _Transport(faust_kafka.Transport):
    Consumer = _Consumer


class SalescastApp(faust.App):
    """A Faust app whose consumer delivers every record of the agents' topics (`_ReadOffsets`), and
    that runs `before_consumer_stops` on a graceful stop while its consumer can still commit."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.agent_topic_names: set[str] = set()  # filled by salescast.stream.topics
        self.before_consumer_stops: list[Callable[[], Awaitable[None]]] = []  # filled by salescast.stream.delivery.offsets

    def _new_transport(self):
        return _Transport(self.conf.broker_consumer, self)

    async def _stop_consumer(self) -> None:
        if self._consumer is not None and self.before_consumer_stops:
            self._consumer.stop_flow()  # no more records handed to the streams; Faust's own stop does it too
            self.flow_control.suspend()
            for step in self.before_consumer_stops:
                await step()
        await super()._stop_consumer()


app = SalescastApp(
    settings.app_id,
    broker=";".join(f"kafka://{server.strip()}" for server in settings.bootstrap_servers.split(",")),
    broker_credentials=_credentials(settings),
    store="rocksdb://",
    datadir=str(settings.data_dir / "faust"),
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication_factor,
    web_port=settings.web_port,
    web_bind="0.0.0.0",
    canonical_url=settings.web_url,  # where other workers forward requests for keys this one owns
    producer_acks=-1,
    # one produce request per message (Faust's default linger of 0) caps a worker at the broker's
    # round-trip rate; a few ms of linger lets the repartition sends travel in batches
    producer_linger_ms=5,
    producer_max_batch_size=512 * 1024,
    producer_max_request_size=4 * 1024 * 1024,
    consumer_auto_offset_reset="earliest",
    stream_buffer_maxsize=8192,
    broker_commit_every=10_000,
    # a crashed worker's partitions move to the others after this long (Faust's default is 60 s);
    # heartbeats come from aiokafka's background task, so long batches do not trip it
    broker_session_timeout=15.0,
    broker_heartbeat_interval=3.0,
    broker_commit_interval=1.0,
    autodiscover=False,
    origin="stream",
)
