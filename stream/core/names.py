"""Names the worker's state is stored under: renaming one loses what was stored under the old name.

Tables are changelogged as <app id>-<table>-changelog, and `salescast retrain`
reads the changelogs by these names. The position sources key each window's and
vector's applied positions (salescast.models.positions) as "<prefix><partition>",
so a prefix renamed would count every record again.
"""

from __future__ import annotations

# worker tables
SKU_WINDOWS_TABLE = "sku-windows"  # per-SKU windows (salescast.models.windows)
USER_ITEMS_TABLE = "user-items"  # per-user decayed interactions (salescast.models.useritem)
SKU_CANDIDATES_TABLE = "sku-candidates"  # per-SKU candidate users (salescast.models.cf.candidates)
PROMO_GUARDRAILS_TABLE = "promo-guardrails"  # the promotion guardrails (salescast.models.promo.guardrails)
ORDER_IDS_TABLE = "order-ids"  # orders' first sightings per input partition (salescast.stream.core.dedup)

# position sources: each input kind's (contract.INPUT_KINDS), and the trigger registrations' (by partition of
# the promo-proposals topic)
SOURCE_PREFIX = {"orders": "o", "clicks": "c", "inventory": "i"}
PROMOTIONS_SOURCE_PREFIX = "p"

# the worker's internal topics, each named <app id>-<name> (stream.topics declares them)
SKU_EVENTS = "sku-events"  # updates keyed by SKU, and the marks that close buckets
USER_EVENTS = "user-events"  # updates keyed by user
SKU_AFFINITIES = "sku-affinities"  # users' changed affinities, batched per SKU partition
INPUT_WATERMARKS = "input-watermarks"  # each input partition's newest event time and last offset (compacted)
PROMO_PROPOSALS = "promo-proposals"  # promotions proposed at bucket close (one partition)


def internal_topic(app_id: str, name: str) -> str:
    return f"{app_id}-{name}"


def changelog_topic(app_id: str, table: str) -> str:
    """Faust's name for a table's changelog."""
    return f"{app_id}-{table}-changelog"
