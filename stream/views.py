"""The worker's HTTP API (contract: HTTP), on Faust's web server.

A request for a SKU another worker owns is forwarded to it by
`app.table_route`, so any worker answers any key.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Awaitable, Callable

import aiohttp
from faust.web import Request, Response, View

from salescast.models import windows
from salescast.stream.agents.housekeeping import broker
from salescast.stream.app import app, settings
from salescast.stream.core.close import sales_view
from salescast.stream.delivery.writes import load_value
from salescast.stream.live import served
from salescast.stream.serving.recommender import recommendations_record
from salescast.stream.serving.registry import CF
from salescast.stream.tables import sku_candidates, sku_windows, user_items

DEFAULT_BUCKETS = 28
MAX_BUCKETS = 10_000
DEFAULT_SKUS_FOR_USER = 10
DEFAULT_USERS_FOR_SKU = 50
MAX_ITEMS = 1_000


def _error(web, status: int, message: str) -> Response:
    return web.json({"error": message}, status=status)


RETRY_AFTER_S = 2


def owner_unreachable_is_503(forwarded: Callable[..., Awaitable[Response]], match_info: str):
    """`forwarded` (an app.table_route view) with an owner that cannot be reached answered 503 and when to
    retry. During a rebalance the worker a key's partition is still assigned to may have stopped already;
    Faust's router lets the connection error through, and its server answers a bare HTML 500."""
    @functools.wraps(forwarded)
    async def get(view: View, request: Request, *args, **kwargs) -> Response:
        try:
            return await forwarded(view, request, *args, **kwargs)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            key = request.match_info.get(match_info, "")
            return view.json({"error": f"the worker that holds {match_info} {key!r} could not be reached "
                                       f"({type(exc).__name__}); its partitions are probably moving between "
                                       f"workers: retry in {RETRY_AFTER_S} s"},
                             status=503, headers={"Retry-After": str(RETRY_AFTER_S)})
    return get


def routed(table, match_info: str):
    """`app.table_route` to the worker that holds the key, 503 if it cannot be reached."""
    route = app.table_route(table=table, match_info=match_info)
    return lambda handler: owner_unreachable_is_503(route(handler), match_info)


def _count(request: Request, name: str, default: int, maximum: int) -> int | str:
    """The query parameter as a whole number in 1..maximum, or the error message saying why not."""
    raw = request.query.get(name, str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        return f"{name} must be a whole number from 1 to {maximum}, got {raw!r}"
    return int(raw)


def is_ready() -> bool:
    """Consuming: started, not rebalancing, tables recovered."""
    try:
        recovery = app.tables.recovery
    except Exception:  # noqa: BLE001 - tables not built yet means not ready
        return False
    return bool(app.started and not app.rebalancing and recovery.completed.is_set())


def _broker_state() -> dict:
    return {"reachable": broker.reachable, "unreachable_s": round(broker.unreachable_for_s(), 1),
            "outages": broker.outages}


@app.page("/healthz")
class Health(View):
    """Liveness: a broker outage does not make it fail, since a restart would not help (the worker waits
    and catches up); `broker` says what is happening."""

    async def get(self, request: Request) -> Response:
        if is_ready():
            return self.json({"status": "ok", "broker": _broker_state()})
        return self.json({"status": "starting", "error": "the worker is starting or recovering its tables",
                          "broker": _broker_state()}, status=503)


@app.page("/readyz")
class Ready(View):
    """Readiness: 503 while the worker starts, recovers or cannot reach a broker."""

    async def get(self, request: Request) -> Response:
        if not broker.reachable:
            return self.json({"status": "broker_unreachable", "broker": _broker_state(),
                              "error": f"no broker at {settings.kafka.bootstrap_servers} has answered for "
                                       f"{broker.unreachable_for_s():.0f} s; the worker waits and catches up "
                                       "from its last commit when one does"}, status=503)
        if not is_ready():
            return self.json({"status": "starting", "error": "the worker is starting or recovering its tables",
                              "broker": _broker_state()}, status=503)
        return self.json({"status": "ok", "broker": _broker_state()})


@app.page("/skus/{sku}/sales")
class SkuSales(View):
    @routed(sku_windows, "sku")
    async def get(self, request: Request, sku: str) -> Response:
        count = _count(request, "buckets", DEFAULT_BUCKETS, MAX_BUCKETS)
        if isinstance(count, str):
            return _error(self, 400, count)
        window = load_value(sku_windows, sku.encode())
        if window is None:
            return _error(self, 404, f"SKU {sku!r} has not been seen by this service")
        return self.json(sales_view(sku, window, settings, count))


def _category(sku: str) -> str | None:
    """From the SKU's latest inventory record if this worker holds its window, else from the model."""
    window = load_value(sku_windows, sku.encode())
    return (window and windows.category(window)) or served[CF].category_of(sku)


@app.page("/recommendations/users/{user_id}")
class SkusForUser(View):
    """The user's top-n SKUs, scored now from their live vector; an unknown user gets a fallback list."""

    @routed(user_items, "user_id")
    async def get(self, request: Request, user_id: str) -> Response:
        count = _count(request, "n", DEFAULT_SKUS_FOR_USER, MAX_ITEMS)
        if isinstance(count, str):
            return _error(self, 400, count)
        vector = load_value(user_items, user_id.encode())
        recommender = served[CF]
        answer = recommender.for_user(vector, count)
        return self.json(recommendations_record(user_id, "skus_for_user", answer, recommender))


@app.page("/recommendations/skus/{sku}/users")
class UsersForSku(View):
    """The SKU's top-n candidate users from its index; a SKU with none gets its category's audience."""

    @routed(sku_candidates, "sku")
    async def get(self, request: Request, sku: str) -> Response:
        count = _count(request, "n", DEFAULT_USERS_FOR_SKU, MAX_ITEMS)
        if isinstance(count, str):
            return _error(self, 400, count)
        recommender = served[CF]
        answer = recommender.for_sku(load_value(sku_candidates, sku.encode()), lambda: _category(sku), count,
                                     settings.recommendations.interaction_half_life_ms)
        return self.json(recommendations_record(sku, "users_for_sku", answer, recommender))
