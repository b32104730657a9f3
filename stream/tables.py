"""RocksDB-backed tables, each with a changelog topic, partitioned like the topic that updates it.

Values are one JSON document per key (see salescast.models.windows, salescast.models.useritem and
salescast.models.cf.candidates).
`use_partitioner=True` sends each changelog record to the partition the
default partitioner picks for its key, the same one the key's events arrive
on, so writes can be batched outside Faust's one-event-at-a-time context.
"""

from __future__ import annotations

from salescast.models.timeunits import DAY_MS
from salescast.stream.core.names import (ORDER_IDS_TABLE, PROMO_GUARDRAILS_TABLE, SKU_CANDIDATES_TABLE,
                                         SKU_WINDOWS_TABLE, USER_ITEMS_TABLE)
from salescast.stream.app import app, settings

# bytes key and value types make Faust use its raw codec for both (tables take no serializer argument)
TABLE_OPTIONS = {"key_type": bytes, "value_type": bytes, "partitions": settings.kafka.partitions,
                 "use_partitioner": True}

sku_windows = app.Table(SKU_WINDOWS_TABLE, help="per-SKU sales, revenue and clicks per bucket; latest inventory",
                        **TABLE_OPTIONS)
user_items = app.Table(USER_ITEMS_TABLE, help="per-user decayed implicit feedback over SKUs", **TABLE_OPTIONS)
sku_candidates = app.Table(SKU_CANDIDATES_TABLE, help="per-SKU users with the strongest affinity (bounded)",
                           **TABLE_OPTIONS)
# the guardrails' shared value and one per proposing SKU (salescast.models.promo.guardrails), beside the
# one-partition proposals topic
promo_guardrails = app.Table(PROMO_GUARDRAILS_TABLE, help="cooldowns, open triggers and budget spent",
                             **{**TABLE_OPTIONS, "partitions": 1})
# orders' first sightings, keyed `<input partition>/<day>/<order_id>` and kept in that input partition
# (stream.core.dedup.key_partition), not where the key hashes. Its changelog also drops what is older than the
# window and two days (wall clock), as the worker's sweep drops it from RocksDB
order_ids = app.Table(ORDER_IDS_TABLE, help="orders seen per input partition, for SALESCAST_DEDUP_WINDOW",
                      extra_topic_configs={"cleanup.policy": "compact,delete",
                                           "retention.ms": str(settings.time.dedup_window_ms + 2 * DAY_MS)},
                      **TABLE_OPTIONS)
ALL_TABLES = (sku_windows, user_items, sku_candidates, promo_guardrails, order_ids)
