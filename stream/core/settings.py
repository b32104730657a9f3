"""Every setting salescast reads from the environment, typed and validated once.

The names and defaults are the public contract's (`docs/contract.md`); a few
additions are marked as such. `Settings.from_env()` is called at start-up and
raises `SettingsError` listing every bad variable with what to do about it, so a
misconfigured worker fails before it touches Kafka.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from salescast.models.forecast.features import FeatureConfig
from salescast.models.promo.policy import PromoPolicy
from salescast.models.timeunits import DAY_MS, HOUR_MS, WEEK_MS

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: SALESCAST_CLOCK: what "now" is. `wall`: the machine's clock (a real shop). `events`: the newest event
#: time read (a simulation whose event time runs ahead of the clock: the demo, `generate --speedup`)
CLOCKS = ("wall", "events")

#: contract topic keys -> default names; each is overridable by SALESCAST_TOPIC_<KEY>
DEFAULT_TOPICS = {
    "orders": "orders",
    "clicks": "clicks",
    "inventory": "inventory",
    "forecasts": "forecasts",
    "promo_triggers": "promo-triggers",
    "promo_outcomes": "promo-outcomes",
    "model_versions": "model-versions",
    "dead_letters": "dead-letters",
}

#: SALESCAST_ACTIVE_BUCKETS' default: the buckets the forecaster reads
FORECASTER_INPUT_LENGTH = FeatureConfig.input_length

_DURATION_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": HOUR_MS, "d": DAY_MS, "w": WEEK_MS}
_DURATION_RE = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$")


class SettingsError(ValueError):
    """One or more environment variables are invalid; the message lists them all."""


def parse_duration_ms(text: str) -> int:
    """'1d' -> 86400000. Accepts ms, s, m, h, d, w."""
    match = _DURATION_RE.match(text)
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration like 1h, 1d, 15m or 500ms")
    return int(match.group(1)) * _DURATION_UNITS_MS[match.group(2)]


@dataclass(frozen=True)
class InteractionWeights:
    """Implicit-feedback weight of each action in the user-item matrix."""

    view: float = 1.0
    wishlist: float = 2.0
    cart: float = 3.0
    purchase: float = 5.0

    def for_action(self, action: str) -> float:
        return getattr(self, action)


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = "localhost:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    topics: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_TOPICS))
    partitions: int = 8
    bucket: str = "1d"
    bucket_ms: int = 86_400_000
    horizon: int = 7
    allowed_lateness_ms: int = 172_800_000
    max_future_ms: int = 86_400_000
    data_dir: Path = Path("./var")
    model_store: Path = Path("./var/models")
    metrics_port: int = 9108
    web_port: int = 6066
    # additions to the contract (all optional, documented in docs/contract.md)
    app_id: str = "salescast"
    history_buckets: int = 120
    max_record_bytes: int = 1_048_576
    user_item_cap: int = 200
    interaction_half_life_ms: int = 30 * 86_400_000
    interaction_weights: InteractionWeights = field(default_factory=InteractionWeights)
    cf_affinity_top: int = 20  # SKUs per user sent to the candidate index
    cf_candidates_per_sku: int = 200  # users kept per SKU in the candidate index
    replication_factor: int = 1
    advertised_url: str | None = None  # how other workers reach this one's HTTP API
    promo: PromoPolicy = field(default_factory=PromoPolicy)  # SALESCAST_PROMO_*
    model_keep: int = 10  # versions kept per model in the store (the current one and its predecessor always)
    retrain_metrics_port: int = 9109  # `salescast retrain --every` serves its Prometheus metrics here
    model_margin: float = 0.02  # how much worse than live (relative) a retrained version may score and go live
    # contract v1.1: a SKU with an event in the last `active_buckets` buckets gets a forecast at every close
    active_buckets: int = 28
    clock: str = "wall"  # SALESCAST_CLOCK, one of CLOCKS
    # an input partition with no record for this long (and nothing left to read) stops holding bucket close back
    idle_timeout_ms: int = 60_000
    # no promo trigger for a bucket that ended longer ago than this before "now" (history being loaded)
    promo_max_age_ms: int = 172_800_000

    @property
    def web_url(self) -> str:
        return self.advertised_url or f"http://{socket.gethostname()}:{self.web_port}"

    @property
    def season(self) -> int:
        """Buckets per seasonal cycle: a day of sub-daily buckets, else a week."""
        if self.bucket_ms < DAY_MS:
            return max(1, DAY_MS // self.bucket_ms)
        return max(1, WEEK_MS // self.bucket_ms)

    def topic(self, key: str) -> str:
        return self.topics[key]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        errors: list[str] = []

        def text(name: str, default: str | None) -> str | None:
            value = env.get(name)
            return default if value is None or value == "" else value

        def integer(name: str, default: int, minimum: int = 0) -> int:
            raw = text(name, None)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                errors.append(f"{name}={raw!r} is not an integer; set a whole number >= {minimum} or unset it (default {default})")
                return default
            if value < minimum:
                errors.append(f"{name}={value} is below {minimum}; set a whole number >= {minimum} or unset it (default {default})")
                return default
            return value

        def number(name: str, default: float) -> float:
            raw = text(name, None)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                errors.append(f"{name}={raw!r} is not a number; set e.g. {default} or unset it")
                return default
            if value < 0:
                errors.append(f"{name}={value} is negative; weights must be >= 0")
                return default
            return value

        def fraction(name: str, default: float, allow_zero: bool = False) -> float:
            value = number(name, default)
            if value > 1 or (value == 0 and not allow_zero):
                low = "0" if allow_zero else "above 0"
                errors.append(f"{name}={value} is not a fraction; set a number from {low} to 1 or unset it "
                              f"(default {default})")
                return default
            return value

        def choice(name: str, default: str | None, allowed: tuple[str, ...]) -> str | None:
            value = text(name, default)
            if value is not None and value not in allowed:
                errors.append(f"{name}={value!r} is not one of {', '.join(allowed)}")
                return default
            return value

        def duration(name: str, default: str) -> tuple[str, int]:
            raw = text(name, default)
            try:
                return raw, parse_duration_ms(raw)
            except ValueError as exc:
                errors.append(f"{name}: {exc}")
                return default, parse_duration_ms(default)

        def existing_file(name: str) -> str | None:
            value = text(name, None)
            if value is not None and not Path(value).is_file():
                errors.append(f"{name}={value!r}: no such file; point it at the PEM file or unset it")
            return value

        bootstrap = text("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
        for server in bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                errors.append(f"KAFKA_BOOTSTRAP_SERVERS: {server!r} is not HOST:PORT (e.g. localhost:9092)")
        protocol = choice("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", SECURITY_PROTOCOLS)
        mechanism = choice("KAFKA_SASL_MECHANISM", None, SASL_MECHANISMS)
        username, password = text("KAFKA_SASL_USERNAME", None), text("KAFKA_SASL_PASSWORD", None)
        if protocol and protocol.startswith("SASL"):
            if not mechanism:
                errors.append(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_MECHANISM ({', '.join(SASL_MECHANISMS)})")
            if not username or not password:
                errors.append(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        topics = {}
        for key, default in DEFAULT_TOPICS.items():
            name = text(f"SALESCAST_TOPIC_{key.upper()}", default)
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", name):
                errors.append(f"SALESCAST_TOPIC_{key.upper()}={name!r} is not a legal Kafka topic name (letters, digits, . _ -)")
            topics[key] = name
        if len(set(topics.values())) != len(topics):
            errors.append("SALESCAST_TOPIC_*: two topics have the same name; give each its own")
        bucket, bucket_ms = duration("SALESCAST_BUCKET", "1d")
        data_dir = Path(text("SALESCAST_DATA_DIR", "./var"))
        model_store = Path(text("SALESCAST_MODEL_STORE", str(data_dir / "models")))
        half_life_text, half_life_ms = duration("SALESCAST_INTERACTION_HALF_LIFE", "30d")
        weights = InteractionWeights(
            view=number("SALESCAST_WEIGHT_VIEW", 1.0),
            wishlist=number("SALESCAST_WEIGHT_WISHLIST", 2.0),
            cart=number("SALESCAST_WEIGHT_CART", 3.0),
            purchase=number("SALESCAST_WEIGHT_PURCHASE", 5.0),
        )
        defaults = PromoPolicy()
        promo = PromoPolicy(
            overstock_days=number("SALESCAST_PROMO_OVERSTOCK_DAYS", defaults.overstock_days),
            affinity_min_users=integer("SALESCAST_PROMO_AFFINITY_MIN_USERS", defaults.affinity_min_users, minimum=1),
            affinity_max_conversion=number("SALESCAST_PROMO_AFFINITY_MAX_CONVERSION",
                                           defaults.affinity_max_conversion),
            max_discount=fraction("SALESCAST_PROMO_MAX_DISCOUNT", defaults.max_discount),
            min_margin=number("SALESCAST_PROMO_MIN_MARGIN", defaults.min_margin),
            discount_step=fraction("SALESCAST_PROMO_DISCOUNT_STEP", defaults.discount_step),
            validity_ms=duration("SALESCAST_PROMO_VALIDITY", "3d")[1],
            holdout_fraction=fraction("SALESCAST_PROMO_HOLDOUT_FRACTION", defaults.holdout_fraction,
                                      allow_zero=True),
            max_targets=integer("SALESCAST_PROMO_MAX_TARGETS", defaults.max_targets, minimum=2),
            cooldown_ms=duration("SALESCAST_PROMO_COOLDOWN", "7d")[1],
            max_open=integer("SALESCAST_PROMO_MAX_OPEN", defaults.max_open, minimum=1),
            daily_budget=number("SALESCAST_PROMO_DAILY_BUDGET", defaults.daily_budget),
        )
        if promo.discount_step > promo.max_discount:
            errors.append(f"SALESCAST_PROMO_DISCOUNT_STEP={promo.discount_step} is above SALESCAST_PROMO_MAX_DISCOUNT="
                          f"{promo.max_discount}: no discount could be offered; lower the step")
        settings = cls(
            bootstrap_servers=bootstrap,
            security_protocol=protocol,
            sasl_mechanism=mechanism,
            sasl_username=username,
            sasl_password=password,
            ssl_cafile=existing_file("KAFKA_SSL_CAFILE"),
            ssl_certfile=existing_file("KAFKA_SSL_CERTFILE"),
            ssl_keyfile=existing_file("KAFKA_SSL_KEYFILE"),
            topics=topics,
            partitions=integer("SALESCAST_PARTITIONS", 8, minimum=1),
            bucket=bucket,
            bucket_ms=bucket_ms,
            horizon=integer("SALESCAST_HORIZON", 7, minimum=1),
            allowed_lateness_ms=integer("SALESCAST_ALLOWED_LATENESS_MS", 172_800_000),
            max_future_ms=integer("SALESCAST_MAX_FUTURE_MS", 86_400_000),
            data_dir=data_dir,
            model_store=model_store,
            metrics_port=integer("SALESCAST_METRICS_PORT", 9108, minimum=1),
            web_port=integer("SALESCAST_WEB_PORT", 6066, minimum=1),
            app_id=text("SALESCAST_APP_ID", "salescast"),
            history_buckets=integer("SALESCAST_HISTORY_BUCKETS", 120, minimum=90),
            max_record_bytes=integer("SALESCAST_MAX_RECORD_BYTES", 1_048_576, minimum=64),
            user_item_cap=integer("SALESCAST_USER_ITEM_CAP", 200, minimum=1),
            interaction_half_life_ms=half_life_ms,
            interaction_weights=weights,
            cf_affinity_top=integer("SALESCAST_CF_AFFINITY_TOP", 20, minimum=1),
            cf_candidates_per_sku=integer("SALESCAST_CF_CANDIDATES_PER_SKU", 200, minimum=1),
            replication_factor=integer("SALESCAST_REPLICATION_FACTOR", 1, minimum=1),
            advertised_url=text("SALESCAST_ADVERTISED_URL", None),
            promo=promo,
            model_keep=integer("SALESCAST_MODEL_KEEP", 10, minimum=2),
            retrain_metrics_port=integer("SALESCAST_RETRAIN_METRICS_PORT", 9109, minimum=1),
            model_margin=fraction("SALESCAST_MODEL_MARGIN", 0.02, allow_zero=True),
            active_buckets=integer("SALESCAST_ACTIVE_BUCKETS", FORECASTER_INPUT_LENGTH, minimum=1),
            clock=choice("SALESCAST_CLOCK", "wall", CLOCKS),
            idle_timeout_ms=integer("SALESCAST_IDLE_TIMEOUT_MS", 60_000, minimum=100),
            promo_max_age_ms=duration("SALESCAST_PROMO_MAX_AGE", "2d")[1],
        )
        del half_life_text
        if settings.advertised_url and not re.match(r"^https?://[^/\s]+(:\d+)?/?$", settings.advertised_url):
            errors.append(f"SALESCAST_ADVERTISED_URL={settings.advertised_url!r} is not like http://host:port")
        for port_name in ("metrics_port", "web_port"):
            if getattr(settings, port_name) > 65535:
                errors.append(f"SALESCAST_{port_name.upper()}={getattr(settings, port_name)} is not a TCP port (1-65535)")
        if errors:
            raise SettingsError("invalid salescast settings:\n  - " + "\n  - ".join(errors))
        return settings
