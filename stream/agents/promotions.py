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

GUARDRAILS_KEY = b"state"


def send_outcome(out: Outbox, outcome: dict) -> None:
    out.add(PROMO_OUTCOMES, outcome["trigger_id"].encode(), dumps(outcome))
    metrics.PROMO_OUTCOMES.labels(str(outcome["final"]).lower()).inc()


def send_outcome_updates(touched: dict[bytes, tuple[dict, object]], out: Outbox) -> None:
    """Interim outcomes of the triggers that the batch's sales were attributed to."""
    for key, (window, _) in touched.items():
        if windows.promotions(window):
            for outcome in outcome_updates(key.decode(), window):
                send_outcome(out, outcome)


@app.agent(promo_proposals)
async def decide_promotions(stream):
    """The guardrails over all SKUs, on one partition: one worker at a time decides them."""
    async for events in batches(stream):
        out = Outbox()
        state = writes.load_value(promo_guardrails, GUARDRAILS_KEY) or guardrails.new_state()
        last_event = None
        for event in events:
            message = event.message
            try:
                proposal = orjson.loads(message.value)
                verdict = admit(state, proposal, settings.promo)
                trigger = proposal["trigger"]
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
        if last_event is not None:
            writes.write(stream, promo_guardrails, GUARDRAILS_KEY, state, last_event)
        await out.flush(writes.producer())
