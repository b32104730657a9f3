"""The worker's HTTP API (contract: HTTP), on Faust's web server.

A request for a SKU another worker owns is forwarded to it by
`app.table_route`, so any worker answers any key.
"""

from __future__ import annotations

import orjson
from faust.web import Request, Response, View

from salescast.engine import sales_view
from stream.app import app, settings
from stream.tables import sku_windows

DEFAULT_BUCKETS = 28
MAX_BUCKETS = 10_000


def _error(web, status: int, message: str) -> Response:
    return web.json({"error": message}, status=status)


def is_ready() -> bool:
    """Consuming: started, not rebalancing, tables recovered."""
    try:
        recovery = app.tables.recovery
    except Exception:  # noqa: BLE001 - tables not built yet means not ready
        return False
    return bool(app.started and not app.rebalancing and recovery.completed.is_set())


@app.page("/healthz")
class Health(View):
    async def get(self, request: Request) -> Response:
        if is_ready():
            return self.json({"status": "ok"})
        return self.json({"status": "starting", "error": "the worker is starting or recovering its tables"},
                         status=503)


@app.page("/skus/{sku}/sales")
class SkuSales(View):
    @app.table_route(table=sku_windows, match_info="sku")
    async def get(self, request: Request, sku: str) -> Response:
        raw_count = request.query.get("buckets", str(DEFAULT_BUCKETS))
        if not raw_count.isdigit() or not 1 <= int(raw_count) <= MAX_BUCKETS:
            return _error(self, 400, f"buckets must be a whole number from 1 to {MAX_BUCKETS}, got {raw_count!r}")
        raw = sku_windows.get(sku.encode())
        if raw is None:
            return _error(self, 404, f"SKU {sku!r} has not been seen by this service")
        return self.json(sales_view(sku, orjson.loads(raw), settings, int(raw_count)))
