"""The Faust app, configured from `Settings` (the environment), nothing else."""

from __future__ import annotations

from salescast.stream.core.settings import Settings
from salescast.stream.faust_fixes import SalescastApp
from salescast.stream.kafka import faust_credentials

settings = Settings.from_env()


app = SalescastApp(
    settings.kafka.app_id,
    broker=";".join(f"kafka://{server.strip()}" for server in settings.kafka.bootstrap_servers.split(",")),
    broker_credentials=faust_credentials(settings),
    store="rocksdb://",
    datadir=str(settings.service.data_dir / "faust"),
    topic_partitions=settings.kafka.partitions,
    topic_replication_factor=settings.kafka.replication_factor,
    web_port=settings.service.web_port,
    web_bind="0.0.0.0",
    canonical_url=settings.service.web_url,  # where other workers forward requests for keys this one owns
    producer_acks=-1,
    # one produce request per message (Faust's default linger of 0) caps a worker at the broker's
    # round-trip rate; a few ms of linger lets the repartition sends travel in batches
    producer_linger_ms=5,
    producer_max_batch_size=512 * 1024,
    producer_max_request_size=4 * 1024 * 1024,
    consumer_auto_offset_reset="earliest",
    # the agents' topics reach the streams a fetch of a partition at a time (faust_fixes.FetchedRecords):
    # at most 1,000 records a fetch, and 64 fetches waiting per agent
    broker_max_poll_records=1000,
    stream_buffer_maxsize=64,
    broker_commit_every=10_000,
    # a crashed worker's partitions move to the others after this long (Faust's default is 60 s);
    # heartbeats come from aiokafka's background task, so long batches do not trip it
    broker_session_timeout=15.0,
    broker_heartbeat_interval=3.0,
    broker_commit_interval=1.0,
    autodiscover=False,
    origin="salescast.stream",
)
