"""Every record handed to the producer is confirmed on the broker before a commit (issue 17.1)."""

import asyncio

import pytest
from aiokafka.errors import MessageSizeTooLargeError

from salescast.stream.delivery.outbox import Deliveries, DeliveryFailed, Outbox


class Producer:
    """An aiokafka producer whose deliveries the test settles: `fail` names the topics the broker refuses."""

    def __init__(self, fail=()):
        self.fail = set(fail)
        self.unsettled: list[tuple[str, asyncio.Future]] = []
        self.flushes = 0

    async def send(self, topic, value=None, key=None, partition=None):
        future = asyncio.get_running_loop().create_future()
        self.unsettled.append((topic, future))
        return future

    async def flush(self):
        self.flushes += 1
        for topic, future in self.unsettled:
            if topic in self.fail:
                future.set_exception(MessageSizeTooLargeError())
            else:
                future.set_result(None)
        self.unsettled.clear()


def sent(producer, deliveries, *topics):
    out = Outbox()
    for topic in topics:
        out.add(topic, b"k", b"v")
    return out.flush(producer, deliveries=deliveries)


async def test_confirm_flushes_and_returns_when_everything_was_delivered():
    producer, deliveries = Producer(), Deliveries()
    await sent(producer, deliveries, "forecasts", "sku-events")
    await deliveries.confirm(producer.flush)
    assert producer.flushes == 1 and deliveries.failure is None
    await deliveries.confirm(producer.flush)  # nothing since: nothing to wait on


async def test_one_refused_record_among_many_fails_the_confirm_and_every_later_one():
    producer, deliveries = Producer(fail={"dead-letters"}), Deliveries()
    await sent(producer, deliveries, "forecasts", "dead-letters", "forecasts")
    with pytest.raises(DeliveryFailed) as caught:
        await deliveries.confirm(producer.flush)
    message = str(caught.value)
    assert "'dead-letters'" in message and "MessageSizeTooLargeError" in message
    assert "no offset was committed" in message and "max.message.bytes" in message
    # delivered since, or nothing sent at all: the lost record's input is still uncommitted, so no commit
    producer.fail.clear()
    await sent(producer, deliveries, "forecasts")
    with pytest.raises(DeliveryFailed) as again:
        await deliveries.confirm(producer.flush)
    assert again.value is caught.value


async def test_a_record_sent_while_the_flush_runs_is_waited_for():
    producer, deliveries = Producer(), Deliveries()
    await sent(producer, deliveries, "forecasts")

    async def flush_while_another_is_sent():
        await producer.flush()
        await sent(producer, deliveries, "promo-triggers")  # not settled by this flush
        asyncio.get_running_loop().call_later(0.05, lambda: producer.unsettled[0][1].set_exception(
            MessageSizeTooLargeError()))

    with pytest.raises(DeliveryFailed, match="promo-triggers"):
        await asyncio.wait_for(deliveries.confirm(flush_while_another_is_sent), 2)


async def test_a_cancelled_delivery_is_a_failure():
    producer, deliveries = Producer(), Deliveries()
    await sent(producer, deliveries, "forecasts")
    producer.unsettled[0][1].cancel()
    producer.unsettled.clear()
    with pytest.raises(DeliveryFailed, match="CancelledError"):
        await deliveries.confirm(producer.flush)
