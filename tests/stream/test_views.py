"""The HTTP views' own logic, without a server."""

import asyncio
import json

import aiohttp
import pytest

from salescast.stream.views import RETRY_AFTER_S, owner_unreachable_is_503


class _Request:
    match_info = {"sku": "sku-0"}


class _View:
    def __init__(self):
        self.answers = []

    def json(self, value, *, status=200, headers=None):
        self.answers.append((value, status, headers))
        return self.answers[-1]


@pytest.mark.parametrize("error", [aiohttp.ClientConnectionError("Connect call failed ('127.0.0.1', 44143)"),
                                   aiohttp.ServerDisconnectedError(), asyncio.TimeoutError()])
async def test_an_owner_that_cannot_be_reached_is_a_503_with_when_to_retry(error):
    """Seen in CI: a worker left during a backfill and the other forwarded /skus/sku-0/sales to it; Faust's
    router let the connection error through and the server answered a bare HTML 500."""
    async def forwarded(view, request, sku):
        raise error

    view = _View()
    value, status, headers = await owner_unreachable_is_503(forwarded, "sku")(view, _Request(), sku="sku-0")
    assert status == 503 and headers == {"Retry-After": str(RETRY_AFTER_S)}
    assert "'sku-0' could not be reached" in value["error"] and "retry in" in value["error"]
    json.dumps(value)


async def test_answers_and_other_errors_pass_through():
    async def answered(view, request, sku):
        return "the owner's answer"

    async def broken(view, request, sku):
        raise KeyError("a bug is not a retry")

    assert await owner_unreachable_is_503(answered, "sku")(_View(), _Request(), sku="sku-0") == "the owner's answer"
    with pytest.raises(KeyError):
        await owner_unreachable_is_503(broken, "sku")(_View(), _Request(), sku="sku-0")
