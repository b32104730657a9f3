"""`salescast generate`: a synthetic shop whose ground truth is known.

Users have latent category preferences and item tastes (a dot product of
latent factors); SKUs sit in categories with a list price, a unit cost, a base
demand, a trend, the category's weekly pattern and a price elasticity. Each day
users visit, view SKUs drawn from their tastes times each SKU's demand that
day, put some in the cart and order some of those; an order needs stock, stock
runs out and is replenished after a lead time. Promotions cut the price for a
few days and lift the chance to buy by (1 - discount) ** elasticity, so later
work can check a measured uplift against the truth. Everything is drawn from
one numpy Generator seeded by --seed: the same seed gives the same events.

The shop can be closed on some days (`closed_days`, a weekly `closed_weekday`,
`holidays` drawn from the seed): a closed day has no event at all, no visit,
order or inventory record, and its stock waits for the next open day. The
days before the first closure are the same as without it.

`GroundTruth` keeps what a model should recover: elasticities, base demand,
category preferences and the users' strongest SKUs.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
from salescast.models.timeunits import DAY_MS

CATEGORIES = ("toys", "books", "garden", "kitchen", "sports", "beauty", "electronics", "fashion")
# a visit is more likely in the evening: relative weight of each hour of the day (UTC)
HOURLY_PROFILE = np.array([1, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 7, 8, 7, 6, 6, 7, 8, 10, 11, 10, 8, 5, 2], dtype=float)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
HOLIDAY_DAYS = (2, 10)  # a holiday closure lasts this many days, both included
HOLIDAY_STREAM = 0x401  # holidays come from their own stream of the seed, so the other draws stay as they were


@dataclass
class ShopConfig:
    seed: int = 7
    skus: int = 200
    users: int = 5000
    days: int = 90
    start_ms: int = 1_760_000_000_000 // DAY_MS * DAY_MS  # a midnight UTC in October 2025
    visit_rate: float = 0.3  # share of users visiting on an average day
    views_per_visit: float = 3.0
    cart_rate: float = 0.12  # a view becomes a cart at list price
    order_rate: float = 0.55  # a cart becomes an order line
    wishlist_rate: float = 0.03
    promo_rate: float = 0.01  # chance per SKU per day that a promotion starts
    latent_dim: int = 8
    closed_days: tuple[int, ...] = ()  # days (0 = the first) on which the shop is closed: no event at all
    closed_weekday: int | None = None  # also closed every week on this weekday (0 = Monday, UTC)
    holidays: int = 0  # also closed for this many random spans of 2 to 10 days (drawn from the seed)


def weekday(ts_ms: int) -> int:
    """The UTC weekday of a time, 0 = Monday."""
    return (ts_ms // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday


def parse_days(text: str) -> tuple[int, ...]:
    """Day indexes from a list such as "5,6,40-49" (ranges include both ends), sorted, each once."""
    days: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            lo, hi = int(first), int(last if dash else first)
        except ValueError:
            raise ValueError(f"{part.strip()!r} is not a day (0 = the first) or a range such as 40-49") from None
        if lo < 0 or hi < lo:
            raise ValueError(f"{part.strip()!r}: days count from 0 and a range runs from low to high")
        days.update(range(lo, hi + 1))
    return tuple(sorted(days))


def parse_weekday(text: str) -> int:
    """0 (Monday) to 6 (Sunday) from "0".."6" or a weekday's name, whole or its first three letters."""
    name = text.strip().lower()
    for index, day in enumerate(WEEKDAYS):
        if name in (str(index), day, day[:3]):
            return index
    raise ValueError(f"{text!r} is not a weekday: give 0 (Monday) to 6 (Sunday), or a name such as sun")


def closures(config: ShopConfig) -> tuple[dict[int, list[str]], list[tuple[int, int]]]:
    """The closed days, each with why ("closed_days", "weekly", "holiday"), and the holidays as (first day, days)."""
    c = config
    closed: dict[int, list[str]] = {}
    outside = [day for day in c.closed_days if not 0 <= day < c.days]
    if outside:
        raise ValueError(f"closed days {outside} are outside the {c.days} simulated days (0 to {c.days - 1})")
    for day in sorted(set(c.closed_days)):
        closed[day] = ["closed_days"]
    if c.closed_weekday is not None:
        if not 0 <= c.closed_weekday <= 6:
            raise ValueError(f"closed weekday {c.closed_weekday} is not 0 (Monday) to 6 (Sunday)")
        for day in range(c.days):
            if weekday(c.start_ms + day * DAY_MS) == c.closed_weekday:
                closed.setdefault(day, []).append("weekly")
    if c.holidays < 0:
        raise ValueError(f"holidays {c.holidays}: give a number of closures, 0 or more")
    holidays = _draw_holidays(c.holidays, c.days, c.seed)
    for first, length in holidays:
        for day in range(first, first + length):
            closed.setdefault(day, []).append("holiday")
    return dict(sorted(closed.items())), holidays


def _draw_holidays(count: int, days: int, seed: int) -> list[tuple[int, int]]:
    """`count` spans of 2 to 10 days at random, apart from each other by an open day at least."""
    if count <= 0:
        return []
    rng = np.random.default_rng([seed, HOLIDAY_STREAM])
    taken = np.zeros(days + 2, dtype=bool)  # one day of margin on each side
    spans = []
    for _ in range(count):
        for _attempt in range(1000):
            length = int(rng.integers(HOLIDAY_DAYS[0], HOLIDAY_DAYS[1] + 1))
            if length > days:
                continue
            first = int(rng.integers(0, days - length + 1))
            if not taken[first:first + length + 2].any():  # taken[k] stands for day k - 1
                break
        else:
            raise ValueError(f"cannot fit {count} holidays of {HOLIDAY_DAYS[0]} to {HOLIDAY_DAYS[1]} days, "
                             f"an open day apart, into {days} days: ask for fewer or simulate more days")
        taken[first + 1:first + length + 1] = True
        spans.append((first, length))
    return sorted(spans)


class Shop:
    """The simulated shop: build it with a config, then iterate `events()`."""

    def __init__(self, config: ShopConfig):
        self.config = config
        c = config
        rng = self.rng = np.random.default_rng(c.seed)
        n, u = c.skus, c.users
        self.sku_ids = [f"sku-{i}" for i in range(n)]
        self.user_ids = [f"u-{i}" for i in range(u)]
        self.category = rng.integers(0, len(CATEGORIES), n)
        self.list_price = np.round(np.exp(rng.normal(3.0, 0.7, n)), 2)
        self.unit_cost = np.round(self.list_price * rng.uniform(0.4, 0.75, n), 2)
        self.base_demand = np.exp(rng.normal(0.0, 0.8, n))  # relative attractiveness
        self.trend = rng.normal(0.0, 0.003, n)  # per day, multiplicative
        self.elasticity = -rng.uniform(1.2, 3.0, n)
        weekly = rng.uniform(0.7, 1.3, (len(CATEGORIES), 7))
        self.weekly = weekly / weekly.mean(axis=1, keepdims=True)
        self.user_category_pref = rng.dirichlet(np.full(len(CATEGORIES), 0.5), u)
        self.user_factors = rng.normal(0, 1, (u, c.latent_dim))
        self.item_factors = rng.normal(0, 1, (n, c.latent_dim))
        taste = self.user_factors @ self.item_factors.T / np.sqrt(c.latent_dim)
        affinity = np.exp(taste) * self.user_category_pref[:, self.category] * len(CATEGORIES)
        self.affinity = affinity  # users x skus, unnormalised
        self.on_hand = rng.integers(50, 400, n)
        self.reorder_point = np.maximum(10, self.on_hand // 5)
        self.incoming: dict[int, tuple[int, int]] = {}  # sku -> (arrival day, quantity)
        self.promo_until = np.full(n, -1)
        self.promo_discount = np.zeros(n)
        self.promotions: list[dict] = []
        self.order_seq = 0
        self.sku_index = {sku: i for i, sku in enumerate(self.sku_ids)}
        self.user_index = {user: j for j, user in enumerate(self.user_ids)}
        self.offers: dict[int, list[Offer]] = {}  # sku index -> offers made to some users (promo triggers)
        self._pending: list[tuple[int, str, dict]] = []  # events of a visit that ran past midnight
        self.closed, self.holidays = closures(c)  # day -> why it is closed; (first day, days) of each holiday

    def offer(self, trigger: dict) -> None:
        """A promo engine acting on a trigger: its targets, and no one else, get its discount until valid_until.

        Its holdout is tracked too: for every member the shop keeps the exact
        chance they buy the SKU in the window with and without the discount,
        given the views they made, so the true uplift of the trigger is known.
        """
        i = self.sku_index.get(trigger["sku"])
        if i is None:
            return
        targets = {self.user_index[t["user_id"]] for t in trigger["targets"] if t["user_id"] in self.user_index}
        holdout = {self.user_index[u] for u in trigger["holdout"] if u in self.user_index}
        # what random targeting at the same budget would have reached: as many users drawn from those the
        # trigger left out, from a generator of the trigger's own, so the shop's draws stay as they are
        outsiders = np.setdiff1d(np.arange(self.config.users), np.fromiter(targets | holdout, dtype=np.int64))
        draw = np.random.default_rng(zlib.crc32(trigger["trigger_id"].encode()))
        random_group = set(draw.choice(outsiders, min(len(targets), len(outsiders)), replace=False).tolist())
        self.offers.setdefault(i, []).append(Offer(trigger["trigger_id"], float(trigger["discount"]), trigger["ts"],
                                                   trigger["valid_until"], targets, targets | holdout, random_group,
                                                   float(self.list_price[i]), float(self.unit_cost[i])))

    def _price_offers(self, sku_index: int, user: int, ts: int, line_discount: float, lift: float) -> None:
        """Every offer on the SKU open at `ts` prices this view both ways, whoever the viewer is (Offer.price)."""
        c = self.config
        buy_without = min(0.95, c.cart_rate * lift) * c.order_rate
        for offer in self.offers.get(sku_index, ()):
            if offer.start <= ts <= offer.until:
                offered = max(line_discount, offer.discount)
                buy_with = min(0.95, c.cart_rate * (1 - offered) ** self.elasticity[sku_index]) * c.order_rate
                offer.price(user, buy_without, buy_with, line_discount, offered)

    def _offer_for(self, sku_index: int, user: int, ts: int) -> "Offer | None":
        for offer in self.offers.get(sku_index, ()):
            if offer.start <= ts <= offer.until and user in offer.members:
                return offer
        return None

    def ground_truth(self) -> dict:
        top = np.argsort(-self.affinity, axis=1)[:, :10]
        return {
            "config": self.config.__dict__,
            "skus": {sku: {"category": CATEGORIES[self.category[i]], "list_price": float(self.list_price[i]),
                           "unit_cost": float(self.unit_cost[i]), "elasticity": float(self.elasticity[i]),
                           "base_demand": float(self.base_demand[i]), "trend_per_day": float(self.trend[i])}
                     for i, sku in enumerate(self.sku_ids)},
            "users": {user: {"category_prefs": dict(zip(CATEGORIES, map(float, self.user_category_pref[j]))),
                             "top_skus": [self.sku_ids[k] for k in top[j]]}
                      for j, user in enumerate(self.user_ids)},
            "promotions": self.promotions,
            "offers": {offer.trigger_id: offer.truth() for offers in self.offers.values() for offer in offers},
            "closed_days": [{"day": day, "start": self.config.start_ms + day * DAY_MS, "reasons": reasons}
                            for day, reasons in self.closed.items()],
            "holidays": [{"first_day": first, "days": length, "start": self.config.start_ms + first * DAY_MS,
                          "end": self.config.start_ms + (first + length) * DAY_MS}
                         for first, length in self.holidays],
        }

    def events(self, before_day: Callable[[], Iterable[dict]] | None = None) -> Iterator[tuple[str, dict]]:
        """(topic, record) in ts order, one simulated day after another.

        `before_day` returns the promo triggers that arrived since it was last
        called (a promo engine's inbox); the shop acts on them before each day.
        """
        for day in range(self.config.days):
            for trigger in before_day() if before_day else ():
                self.offer(trigger)
            yield from self.day(day)

    def day(self, day: int) -> list[tuple[str, dict]]:
        """One simulated day's (topic, record) in ts order; call it for day 0, 1, ... in turn.

        A visit that runs past midnight finishes in the next day's list, unless the shop is
        closed that day: a closed day's list is empty, and what was cut off of such a visit
        did not happen (its order's stock is back on the shelf).
        """
        if day in self.closed:
            for _, topic, record in self._pending:
                if topic == "orders":
                    for item in record["items"]:
                        self.on_hand[self.sku_index[item["sku"]]] += item["qty"]
            self._pending = []
            return []
        events = self._pending + self._simulate(day)
        events.sort(key=lambda e: e[0])
        if day < self.config.days - 1:
            end = self.config.start_ms + (day + 1) * DAY_MS
            cut = next((k for k, e in enumerate(events) if e[0] >= end), len(events))
            events, self._pending = events[:cut], events[cut:]
        else:
            self._pending = []
        return [(topic, record) for _, topic, record in events]

    def _simulate(self, day: int) -> list[tuple[int, str, dict]]:
        c, rng = self.config, self.rng
        n = c.skus
        day_start = c.start_ms + day * DAY_MS
        events: list[tuple[int, str, dict]] = []
        self._receive_stock(day, day_start, events)
        self._start_promotions(day, day_start)
        on_promo = self.promo_until >= day
        discount = np.where(on_promo, self.promo_discount, 0.0)
        price_lift = (1 - discount) ** self.elasticity
        dow = weekday(day_start)
        demand = self.base_demand * np.exp(self.trend * day) * self.weekly[self.category, dow]
        for i in range(n):
            events.append((day_start, "inventory", self._inventory(i, day_start)))
        visits = rng.poisson(c.visit_rate * c.users)
        visitors = rng.integers(0, c.users, visits)
        hours = rng.choice(24, visits, p=HOURLY_PROFILE / HOURLY_PROFILE.sum())
        visit_ts = day_start + hours * 3_600_000 + rng.integers(0, 3_600_000, visits)
        # price works on the decision to buy (below), not on what is viewed: so a SKU's units move
        # by exactly (1 - discount) ** elasticity, the truth an estimate is checked against
        weights = self.affinity[visitors] * demand[None, :]
        cumulative = np.cumsum(weights, axis=1)
        cumulative /= cumulative[:, -1:]
        view_counts = 1 + rng.poisson(c.views_per_visit - 1, visits)
        for v in range(visits):
            user = self.user_ids[visitors[v]]
            ts = int(visit_ts[v])
            session = f"s-{day}-{v}"
            viewed = np.unique(np.searchsorted(cumulative[v], rng.random(view_counts[v])))
            lines = []
            for sku_index in viewed:
                sku_index = int(min(sku_index, n - 1))
                sku = self.sku_ids[sku_index]
                ts += int(rng.integers(5_000, 90_000))
                events.append((ts, "clicks", {"user_id": user, "sku": sku, "action": "view", "ts": ts,
                                              "session_id": session}))
                if rng.random() < c.wishlist_rate:
                    ts += int(rng.integers(1_000, 20_000))
                    events.append((ts, "clicks", {"user_id": user, "sku": sku, "action": "wishlist", "ts": ts,
                                                  "session_id": session}))
                line_discount, lift, promo = discount[sku_index], price_lift[sku_index], None
                if self.offers:
                    self._price_offers(sku_index, int(visitors[v]), ts, line_discount, lift)
                offer = self._offer_for(sku_index, int(visitors[v]), ts) if self.offers else None
                if offer is not None:
                    offered = max(line_discount, offer.discount)
                    offered_lift = (1 - offered) ** self.elasticity[sku_index]
                    offer.observe(int(visitors[v]), min(0.95, c.cart_rate * lift) * c.order_rate,
                                  min(0.95, c.cart_rate * offered_lift) * c.order_rate)
                    if int(visitors[v]) in offer.targets:
                        line_discount, lift = offered, offered_lift
                        if offer.discount >= discount[sku_index]:
                            promo = offer.trigger_id
                if rng.random() < min(0.95, c.cart_rate * lift):
                    ts += int(rng.integers(1_000, 30_000))
                    events.append((ts, "clicks", {"user_id": user, "sku": sku, "action": "cart", "ts": ts,
                                                  "session_id": session}))
                    if rng.random() < c.order_rate:
                        qty = min(1 + int(rng.poisson(0.3)), int(self.on_hand[sku_index]))
                        if qty > 0:  # sold out: the sale is lost
                            self.on_hand[sku_index] -= qty
                            unit_price = float(np.round(self.list_price[sku_index] * (1 - line_discount), 2))
                            line = {"sku": sku, "qty": qty, "unit_price": unit_price}
                            if line_discount > 0:
                                line["discount"] = float(line_discount)
                            if promo is None and discount[sku_index] > 0:
                                promo = next((p["promo_id"] for p in reversed(self.promotions)
                                              if p["sku"] == sku), None)
                            lines.append((line, promo))
            if lines:
                ts += int(rng.integers(10_000, 120_000))
                self.order_seq += 1
                promo = lines[0][1]  # an order names one promotion: its first line's
                lines = [line for line, _ in lines]
                events.append((ts, "orders", {"order_id": f"o-{self.order_seq}", "user_id": user, "ts": ts,
                                              "items": lines, "promo_id": promo, "currency": "EUR",
                                              "channel": "web"}))
        self._reorder(day)
        return events

    def _inventory(self, i: int, ts: int) -> dict:
        return {"sku": self.sku_ids[i], "on_hand": int(self.on_hand[i]), "ts": ts,
                "list_price": float(self.list_price[i]), "unit_cost": float(self.unit_cost[i]),
                "category": CATEGORIES[self.category[i]]}

    def _start_promotions(self, day: int, day_start: int) -> None:
        starting = (self.promo_until < day) & (self.rng.random(self.config.skus) < self.config.promo_rate)
        for i in np.flatnonzero(starting):
            length = int(self.rng.integers(3, 8))
            discount = float(np.round(self.rng.uniform(0.1, 0.3), 2))
            self.promo_until[i] = day + length - 1
            self.promo_discount[i] = discount
            self.promotions.append({"promo_id": f"promo-{day}-{self.sku_ids[i]}", "sku": self.sku_ids[i],
                                    "start": day_start, "end": day_start + length * DAY_MS, "discount": discount,
                                    "expected_lift": float((1 - discount) ** self.elasticity[i])})

    def _reorder(self, day: int) -> None:
        for i in np.flatnonzero(self.on_hand < self.reorder_point):
            if int(i) not in self.incoming:
                lead = int(self.rng.integers(2, 6))
                self.incoming[int(i)] = (day + lead, int(self.reorder_point[i] * 5))

    def _receive_stock(self, day: int, day_start: int, events: list) -> None:
        for i, (arrival, qty) in list(self.incoming.items()):
            if arrival <= day:
                self.on_hand[i] += qty
                del self.incoming[i]


MEAN_QUANTITY = 1.3  # units per order line: 1 + Poisson(0.3), as `_simulate` draws them (stock permitting)


@dataclass
class Offer:
    """A trigger as the shop acts on it, with what its members would buy with and without it."""

    trigger_id: str
    discount: float
    start: int
    until: int
    targets: set[int]
    members: set[int]  # targets and holdout
    random_group: set[int] = frozenset()  # as many users as targets, drawn from the rest: random targeting
    list_price: float = 0.0
    unit_cost: float = 0.0

    def __post_init__(self) -> None:
        self._no_buy = {}  # member -> [P(no purchase) without the offer, P(no purchase) with it]
        # any viewer in the window -> [P(no purchase) without, with, price factor without, with]: what the
        # offer would have done for them, so other audiences can be costed on the same views
        self._priced: dict[int, list[float]] = {}

    def price(self, user: int, buy_without: float, buy_with: float, discount_without: float,
              discount_with: float) -> None:
        """A view of the SKU while the offer is open, by anyone: one more chance to buy, both ways."""
        entry = self._priced.setdefault(user, [1.0, 1.0, 1.0, 1.0])
        entry[0] *= 1 - buy_without
        entry[1] *= 1 - buy_with
        entry[2], entry[3] = 1 - discount_without, 1 - discount_with

    def money(self, audience: str) -> dict:
        """Expected incremental units, revenue and margin (net of the discount, which buyers who would have
        bought anyway get too) had the offer gone to `audience`: "policy" (its targets), "random" (as many
        users drawn at random), "everyone" (every viewer in the window: the same discount for all)."""
        members = {"policy": self.targets, "random": self.random_group}.get(audience)
        units = revenue = margin = 0.0
        reached = 0
        for user, (no_without, no_with, without, with_) in self._priced.items():
            if members is not None and user not in members:
                continue
            reached += 1
            buy_without, buy_with = (1 - no_without) * MEAN_QUANTITY, (1 - no_with) * MEAN_QUANTITY
            units += buy_with - buy_without
            revenue += self.list_price * (buy_with * with_ - buy_without * without)
            margin += buy_with * (self.list_price * with_ - self.unit_cost) \
                - buy_without * (self.list_price * without - self.unit_cost)
        offered = len(members) if members is not None else reached
        return {"offered": offered, "viewers": reached, "units": units, "revenue": revenue, "margin": margin,
                "discount_cost": self.list_price * self.discount * sum(
                    (1 - entry[1]) * MEAN_QUANTITY for user, entry in self._priced.items()
                    if members is None or user in members)}

    def observe(self, user: int, buy_without: float, buy_with: float) -> None:
        """A member viewed the SKU: one more chance to buy, with and without the discount."""
        odds = self._no_buy.setdefault(user, [1.0, 1.0])
        odds[0] *= 1 - buy_without
        odds[1] *= 1 - buy_with

    def truth(self) -> dict:
        """The true uplift: the mean over all members of P(buy with) - P(buy without), given their views;
        and the conversions a measurement should expect: the targets' with the offer, the holdout's without."""
        effect = sum(odds[0] - odds[1] for odds in self._no_buy.values())
        holdout = self.members - self.targets
        return {"members": len(self.members), "targets": len(self.targets),
                "uplift": effect / len(self.members) if self.members else None,
                "targets_buying": sum(1 - self._no_buy[u][1] for u in self.targets if u in self._no_buy),
                "holdout_buying": sum(1 - self._no_buy[u][0] for u in holdout if u in self._no_buy)}


def paced(events: Iterator[tuple[str, dict]], rate: float | None, speedup: float | None,
          clock=time.monotonic, sleep=time.sleep) -> Iterator[tuple[str, dict]]:
    """Yield events no faster than `rate` per second and with event time at most `speedup` x the clock."""
    started = clock()
    first_ts = None
    for count, (topic, record) in enumerate(events):
        due = started + count / rate if rate else started
        if speedup:
            if first_ts is None:
                first_ts = record["ts"]
            due = max(due, started + (record["ts"] - first_ts) / 1000.0 / speedup)
        wait = due - clock()
        if wait > 0:
            sleep(wait)
        yield topic, record
