"""stream/faust_fixes.py: the workarounds of faust-streaming behaviours, and a canary for a Faust upgrade."""

from importlib.metadata import version

import pytest
from faust.types import TP

from salescast.stream import faust_fixes
from salescast.stream.app import app
from salescast.stream.faust_fixes import _ReadOffsets
from salescast.stream.topics import clicks, inventory, orders, promo_proposals, sku_affinities, sku_events, user_events


@pytest.mark.parametrize(("owner", "attribute"), faust_fixes.RELIED_ON,
                         ids=[f"{owner.__name__}.{attribute}" for owner, attribute in faust_fixes.RELIED_ON])
def test_canary_every_private_faust_attribute_the_worker_relies_on_still_exists(owner, attribute):
    """Fails on a Faust upgrade that moved one: read stream/faust_fixes.py, then check each workaround
    still needs doing and is done right against the new code (faust_fixes says why each is there)."""
    assert hasattr(owner, attribute), (
        f"faust-streaming {version('faust-streaming')} has no {owner.__name__}.{attribute}: "
        "stream/faust_fixes.py relies on it")


def test_canary_the_consumer_and_producer_instances_have_what_faust_fixes_uses():
    consumer = app.consumer
    assert isinstance(consumer._read_offset, _ReadOffsets)  # set by _Consumer._reset_state
    assert hasattr(consumer, "_thread") and hasattr(consumer._thread, "seek_wait")
    assert hasattr(app.producer, "_producer")


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


def test_no_module_outside_faust_fixes_touches_a_private_faust_attribute():
    """The one-room rule, checked: `app.`/`stream.`/`consumer.`/`producer.`/`table.` followed by `_name`."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    private = re.compile(r"\b(app|stream|consumer|producer|table|tables|data|agent)\s*\.\s*_[a-z]\w*")
    offenders = []
    for path in root.joinpath("stream").rglob("*.py"):  # Faust is the worker's alone
        if path.name == "faust_fixes.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if private.search(line.split("#")[0]):
                offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert not offenders, "move these into stream/faust_fixes.py:\n" + "\n".join(offenders)
