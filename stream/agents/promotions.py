"""Promotions: the guardrails decide the proposals every SKU partition makes at close; an admitted trigger
is emitted and registered with its SKU's window, which measures its outcome against the holdout."""

from __future__ import annotations

import orjson

from salescast.models import windows
from salescast.models.promo import guardrails
from salescast.stream import metrics
from salescast.stream.app import app, settings
from salescast.stream.core.contract import dumps
from salescast.stream.core.names import PROMOTIONS_SOURCE_PREFIX
from salescast.stream.delivery import writes
from salescast.stream.delivery.offsets import batches
from salescast.stream.delivery.outbox import Outbox
from salescast.stream.serving.promoter import admit, outcome_updates, registration
from salescast.stream.tables import promo_guardrails
from salescast.stream.topics import PROMO_OUTCOMES, PROMO_TRIGGERS, SKU_EVENTS, promo_proposals

SHARED_KEY = b"state"  # the key of the one value earlier versions kept, now the shared value
SKU_KEY_PREFIX = b"sku:"


def send_outcome(out: Outbox, outcome: dict) -> None:
    out.add(PROMO_OUTCOMES, outcome["trigger_id"].encode(), dumps(outcome))
    metrics.PROMO_OUTCOMES.labels(str(outcome["final"]).lower()).inc()


def send_outcome_updates(touched: dict[bytes, tuple[dict, object]], out: Outbox) -> None:
    """Interim outcomes of the triggers that the batch's sales were attributed to."""
    for key, (window, _) in touched.items():
        if windows.promotions(window):
            for outcome in outcome_updates(key.decode(), window):
                send_outcome(out, outcome)


class GuardrailValues:
    """The guardrails' values for one batch: the shared one and each proposing SKU's, read once and
    written back together (salescast.models.promo.guardrails says why they are split)."""

    def __init__(self) -> None:
        self.shared = writes.load_value(promo_guardrails, SHARED_KEY) or guardrails.new_state()
        self.skus: dict[bytes, dict] = {}
        if guardrails.is_single_value(self.shared):  # the one value earlier versions kept
            self.shared, skus = guardrails.split_single_value(self.shared)
            self.skus = {sku.encode(): value for sku, value in skus.items()}

    def of(self, sku: str) -> dict:
        key = sku.encode()
        if key not in self.skus:
            self.skus[key] = writes.load_value(promo_guardrails, SKU_KEY_PREFIX + key) or guardrails.new_sku_state()
        return self.skus[key]

    def write(self, stream, event) -> None:
        writes.write(stream, promo_guardrails, SHARED_KEY, self.shared, event)
        for key, value in self.skus.items():
            writes.write(stream, promo_guardrails, SKU_KEY_PREFIX + key, value, event)


@app.agent(promo_proposals)
async def decide_promotions(stream):
    """The guardrails over all SKUs, on one partition: one worker at a time decides them."""
    async for events in batches(stream):
        out = Outbox()
        values = GuardrailValues()
        last_event = None
        for event in events:
            message = event.message
            try:
                proposal = orjson.loads(message.value)
                trigger = proposal["trigger"]
                verdict = admit(values.shared, values.of(trigger["sku"]), proposal, settings.promo)
                source = f"{PROMOTIONS_SOURCE_PREFIX}{message.partition}"
                update = registration(trigger, source, message.offset).to_wire()
            except Exception as exc:  # noqa: BLE001 - a corrupt internal record is kept, never fatal
                writes.processing_error(out, message, exc)
                continue
            last_event = event
            if verdict != guardrails.ADMITTED:
                metrics.PROMO_REFUSED.labels(verdict).inc()
                continue
            key = trigger["sku"].encode()
            # re-sent as it was after a crash re-read (same id): the SKU's window ignores the re-registration
            out.add(PROMO_TRIGGERS, key, dumps(trigger))
            out.add(SKU_EVENTS, key, orjson.dumps(update))
            metrics.TRIGGERS_EMITTED.labels(trigger["reason"]).inc()
        if last_event is not None:  # the table has one partition: any event of the batch files the writes
            values.write(stream, last_event)
        await out.flush(writes.producer())
