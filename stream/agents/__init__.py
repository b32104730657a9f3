"""The agents, one module per domain, each thin: decode, call the core (stream.core), emit.

- `ingest`: input topics -> updates repartitioned by SKU and by user, dead letters, marks
- `skus`: SKU windows and bucket close (a forecast for every live SKU, promotion proposals)
- `promotions`: the guardrails over all proposals; triggers and their outcomes
- `users`: user vectors, affinities, each SKU's candidate users
- `housekeeping`: rate and lag gauges, hot swap of model versions

Every agent reads batches (stream.delivery.offsets.batches): a batch's
offsets are committed only after the agent has handled it, and the producer
is flushed before each commit (stream.delivery.writes). Records the consumer
skipped around a recovery are read back, or sought back to, before any later
record is committed (stream.delivery.continuity).

Importing this package registers the agents, tables and timers on the app.
"""

from salescast.stream.agents import housekeeping, ingest, promotions, skus, users  # noqa: F401
