"""Topics: the contract's inputs and outputs, three internal repartition topics, and the input watermarks.

Values travel as raw bytes: the agents decode and validate them with the
contract's compiled schemas, so a bad record becomes a dead letter instead of
an exception inside Faust's deserialiser (which would skip it silently).
"""

from __future__ import annotations

from salescast.stream.app import app, settings
from salescast.stream.core import names

RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


def _internal(name: str) -> str:
    return names.internal_topic(settings.kafka.app_id, name)


def _agents_read(name: str, **options):
    """A topic an agent reads: committed by salescast.stream.delivery.offsets once the agent has handled a
    record, not by Faust's acks, which a rebalance can give for records no agent saw
    (salescast.stream.delivery.continuity); and with no
    last-read filter in the consumer (salescast.stream.faust_fixes._ReadOffsets)."""
    topic = app.topic(name, **options, **RAW, acks=False)
    app.agent_topic_names.add(topic.get_topic_name())
    return topic


orders = _agents_read(settings.kafka.topic("orders"))
clicks = _agents_read(settings.kafka.topic("clicks"))
inventory = _agents_read(settings.kafka.topic("inventory"))
forecasts = app.topic(settings.kafka.topic("forecasts"), **RAW)
dead_letters = app.topic(settings.kafka.topic("dead_letters"), **RAW)
promo_triggers = app.topic(settings.kafka.topic("promo_triggers"), **RAW)
promo_outcomes = app.topic(settings.kafka.topic("promo_outcomes"), **RAW)

# Keyed by SKU / by user: what makes each table's partitions line up with the stream
# that updates them. Ticks (watermark advances) go to every partition of sku_events.
sku_events = _agents_read(_internal(names.SKU_EVENTS), internal=True, partitions=settings.kafka.partitions)
user_events = _agents_read(_internal(names.USER_EVENTS), internal=True, partitions=settings.kafka.partitions)
# A user's affinity changes, batched per SKU partition (one record per partition per batch,
# no key): for the worker that owns each SKU's candidate index.
sku_affinities = _agents_read(_internal(names.SKU_AFFINITIES), internal=True, partitions=settings.kafka.partitions)
# Each input partition's newest event time, key "topic/partition": what a restarted or
# rebalanced worker judges `future` and `late` against (salescast.stream.core.ingest.Ingestor.seed).
input_watermarks = app.topic(_internal(names.INPUT_WATERMARKS), internal=True, partitions=1, compacting=True,
                             **RAW)
# Promotions proposed at bucket close, all on one partition: the guardrails (cooldown, open
# triggers, daily budget) hold over every SKU, so one worker at a time decides them.
promo_proposals = _agents_read(_internal(names.PROMO_PROPOSALS), internal=True, partitions=1)


def worker_topics() -> list[tuple[str, int, bool]]:
    """(name, partitions, compacted) of the internal topics above, which the worker creates for itself
    before Faust subscribes: a topic still missing when the consumer joins its group is left out of the
    assignment until the next metadata refresh (5 minutes), and its agent reads nothing until then.
    The tables' changelogs are Faust's to create."""
    return [(topic.get_topic_name(), topic.partitions, bool(topic.compacting))
            for topic in (sku_events, user_events, sku_affinities, input_watermarks, promo_proposals)]


# the names the agents send to (the outbox takes names, not Faust topics)
SKU_EVENTS, USER_EVENTS = sku_events.get_topic_name(), user_events.get_topic_name()
SKU_AFFINITIES = sku_affinities.get_topic_name()
FORECASTS, DEAD_LETTERS = forecasts.get_topic_name(), dead_letters.get_topic_name()
INPUT_WATERMARKS = input_watermarks.get_topic_name()
PROMO_PROPOSALS, PROMO_TRIGGERS = promo_proposals.get_topic_name(), promo_triggers.get_topic_name()
PROMO_OUTCOMES = promo_outcomes.get_topic_name()
