"""The worker's Faust consumer keeps no last-read mark for the agents' topics (salescast.stream.app._ReadOffsets)."""

from faust.types import TP

from salescast.stream.app import _ReadOffsets, app
from salescast.stream.topics import clicks, inventory, orders, promo_proposals, sku_affinities, sku_events, user_events


def test_the_agents_topics_have_no_last_read_offset_to_drop_re_read_records_by():
    offsets = _ReadOffsets({"orders"})
    offsets[TP("orders", 0)] = 1562  # what a fetch before the recovery's seek left
    offsets[TP("app-sku-windows-changelog", 0)] = 40
    # Faust's fetch loop delivers a record unless it is at or below this mark
    assert offsets[TP("orders", 0)] is None
    assert offsets[TP("app-sku-windows-changelog", 0)] == 40  # the tables' changelogs stay Faust's to filter
    assert offsets[TP("clicks", 3)] is None  # nothing read yet, as with Faust's own mapping


def test_the_workers_consumer_uses_it_for_every_topic_an_agent_reads():
    assert app.agent_topic_names == {topic.get_topic_name() for topic in (
        orders, clicks, inventory, sku_events, user_events, sku_affinities, promo_proposals)}
    assert isinstance(app.consumer._read_offset, _ReadOffsets)
    assert app.consumer._read_offset.unfiltered_topics is app.agent_topic_names
