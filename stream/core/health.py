"""Whether the brokers answer, from periodic probes: what `/readyz` and the broker metrics report.

A pure state machine (the probe's I/O and the clock are passed in, as in
stream.delivery.continuity). During an outage the worker itself only waits:
aiokafka reconnects, sends wait in the producer (until Faust's
producer_request_timeout, 20 minutes), and nothing is committed, so when the
broker is back the worker reads on from its last commit and catches up.
"""

from __future__ import annotations

import time
from typing import Callable


class BrokerReachability:
    """Unreachable once `misses` probes in a row failed (one lost connection is not an outage); reachable
    again at the first probe that succeeds."""

    def __init__(self, misses: int = 2, clock: Callable[[], float] = time.monotonic) -> None:
        self.misses, self.clock = misses, clock
        self.reachable = True
        self.outages = 0
        self._missed = 0
        self._first_miss_at: float | None = None

    def observe(self, answered: bool) -> str | None:
        """One probe's result; "lost" or "back" when it changes what is reported."""
        if answered:
            self._missed, self._first_miss_at = 0, None
            if not self.reachable:
                self.reachable = True
                return "back"
            return None
        self._missed += 1
        if self._first_miss_at is None:
            self._first_miss_at = self.clock()
        if self.reachable and self._missed >= self.misses:
            self.reachable = False
            self.outages += 1
            return "lost"
        return None

    def unreachable_for_s(self) -> float:
        """Seconds since the first missed probe of the current outage (0 while reachable)."""
        return 0.0 if self.reachable or self._first_miss_at is None else self.clock() - self._first_miss_at
