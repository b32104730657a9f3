"""Every setting salescast reads from the environment, typed and validated once.

The names and defaults are the public contract's (`docs/contract.md`); a few
additions are marked as such. `Settings.from_env()` is called at start-up and
raises `SettingsError` listing every bad variable with what to do about it, so a
misconfigured worker fails before it touches Kafka. Settings come in sections,
one per concern (`settings.kafka`, `.time`, `.forecasting`, `.recommendations`,
`.promo`, `.store`, `.service`), each reading its own variables.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from salescast.models.forecast.features import FeatureConfig
from salescast.models.promo.policy import OBJECTIVES, PromoPolicy
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


class _Environment:
    """Reads typed values from the environment, collecting every error instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.errors: list[str] = []

    def text(self, name: str, default: str | None) -> str | None:
        value = self.env.get(name)
        return default if value is None or value == "" else value

    def secret(self, name: str) -> str | None:
        """`name`, or the contents of the file `name_FILE` names (a secret mounted as a file, as Docker and
        Kubernetes do), trailing newline dropped. Errors name the variables, never the value."""
        value, path = self.text(name, None), self.text(f"{name}_FILE", None)
        if value is not None and path is not None:
            self.errors.append(f"{name} and {name}_FILE are both set: keep one")
            return value
        if path is None:
            return value
        try:
            return Path(path).read_text().rstrip("\r\n") or None
        except OSError as exc:
            self.errors.append(f"{name}_FILE={path!r} cannot be read ({exc.strerror or type(exc).__name__}): "
                               "point it at the file holding the secret")
            return None

    def _converted(self, name: str, convert: Callable[[str], float], expected: str) -> float | None:
        """The variable converted, or None when it is unset or, with an error saying what was expected, wrong."""
        raw = self.text(name, None)
        if raw is None:
            return None
        try:
            return convert(raw)
        except ValueError:
            self.errors.append(f"{name}={raw!r} is not {expected}")
            return None

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        advice = f"set a whole number >= {minimum} or unset it (default {default})"
        value = self._converted(name, int, f"an integer; {advice}")
        if value is None:
            return default
        if value < minimum:
            self.errors.append(f"{name}={value} is below {minimum}; {advice}")
            return default
        return value

    def port(self, name: str, default: int) -> int:
        value = self.integer(name, default, minimum=1)
        if value > 65535:
            self.errors.append(f"{name}={value} is not a TCP port (1-65535)")
            return default
        return value

    def number(self, name: str, default: float) -> float:
        value = self._converted(name, float, f"a number; set e.g. {default} or unset it")
        if value is None:
            return default
        if value < 0:
            self.errors.append(f"{name}={value} is negative; weights must be >= 0")
            return default
        return value

    def fraction(self, name: str, default: float, allow_zero: bool = False) -> float:
        value = self.number(name, default)
        if value > 1 or (value == 0 and not allow_zero):
            low = "0" if allow_zero else "above 0"
            self.errors.append(f"{name}={value} is not a fraction; set a number from {low} to 1 or unset it "
                               f"(default {default})")
            return default
        return value

    def choice(self, name: str, default: str | None, allowed: tuple[str, ...]) -> str | None:
        value = self.text(name, default)
        if value is not None and value not in allowed:
            self.errors.append(f"{name}={value!r} is not one of {', '.join(allowed)}")
            return default
        return value

    def holidays_country(self, name: str) -> str:
        """A country the holidays package knows ("US", "AU-VIC"), or "" for none."""
        from salescast.models.forecast.calendar import public_holidays

        value = self.text(name, "") or ""
        if value:
            try:
                public_holidays(value, [2000])
            except ValueError as exc:
                self.errors.append(f"{name}={value!r}: {exc}, or unset it")
                return ""
        return value

    def duration(self, name: str, default: str) -> tuple[str, int]:
        """(the text, in milliseconds)"""
        raw = self.text(name, default)
        try:
            return raw, parse_duration_ms(raw)
        except ValueError as exc:
            self.errors.append(f"{name}: {exc}")
            return default, parse_duration_ms(default)

    def duration_ms(self, name: str, default: str) -> int:
        return self.duration(name, default)[1]

    def existing_file(self, name: str) -> str | None:
        value = self.text(name, None)
        if value is not None and not Path(value).is_file():
            self.errors.append(f"{name}={value!r}: no such file; point it at the PEM file or unset it")
        return value


@dataclass(frozen=True)
class KafkaSettings:
    """Where the cluster is, how to connect (stream.kafka.client_options maps it), and the topics."""

    bootstrap_servers: str = "localhost:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False, metadata={"secret": True})
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    topics: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_TOPICS))
    partitions: int = 8
    replication_factor: int = 1
    app_id: str = "salescast"  # the consumer group, and the prefix of the internal topics and changelogs
    max_record_bytes: int = 1_048_576  # a larger input record is a dead letter (too_large)

    def topic(self, key: str) -> str:
        return self.topics[key]

    @classmethod
    def from_env(cls, env: _Environment) -> "KafkaSettings":
        bootstrap = env.text("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
        for server in bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                env.errors.append(f"KAFKA_BOOTSTRAP_SERVERS: {server!r} is not HOST:PORT (e.g. localhost:9092)")
        protocol = env.choice("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", SECURITY_PROTOCOLS)
        mechanism = env.choice("KAFKA_SASL_MECHANISM", None, SASL_MECHANISMS)
        username, password = env.secret("KAFKA_SASL_USERNAME"), env.secret("KAFKA_SASL_PASSWORD")
        if protocol and protocol.startswith("SASL"):
            if not mechanism:
                env.errors.append(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_MECHANISM "
                                  f"({', '.join(SASL_MECHANISMS)})")
            if not username or not password:
                env.errors.append(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and "
                                  "KAFKA_SASL_PASSWORD (or KAFKA_SASL_USERNAME_FILE and KAFKA_SASL_PASSWORD_FILE)")
        topics = {}
        for key, default in DEFAULT_TOPICS.items():
            name = env.text(f"SALESCAST_TOPIC_{key.upper()}", default)
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", name):
                env.errors.append(f"SALESCAST_TOPIC_{key.upper()}={name!r} is not a legal Kafka topic name "
                                  "(letters, digits, . _ -)")
            topics[key] = name
        if len(set(topics.values())) != len(topics):
            env.errors.append("SALESCAST_TOPIC_*: two topics have the same name; give each its own")
        return cls(
            bootstrap_servers=bootstrap, security_protocol=protocol, sasl_mechanism=mechanism,
            sasl_username=username, sasl_password=password, ssl_cafile=env.existing_file("KAFKA_SSL_CAFILE"),
            ssl_certfile=env.existing_file("KAFKA_SSL_CERTFILE"), ssl_keyfile=env.existing_file("KAFKA_SSL_KEYFILE"),
            topics=topics, partitions=env.integer("SALESCAST_PARTITIONS", 8, minimum=1),
            replication_factor=env.integer("SALESCAST_REPLICATION_FACTOR", 1, minimum=1),
            app_id=env.text("SALESCAST_APP_ID", "salescast"),
            max_record_bytes=env.integer("SALESCAST_MAX_RECORD_BYTES", 1_048_576, minimum=64))


@dataclass(frozen=True)
class TimeSettings:
    """Event time: the bucket, what is late or future, what "now" is, and when a partition counts as idle."""

    bucket: str = "1d"
    bucket_ms: int = DAY_MS
    allowed_lateness_ms: int = 2 * DAY_MS
    max_future_ms: int = DAY_MS
    clock: str = "wall"  # SALESCAST_CLOCK, one of CLOCKS
    # an input partition with no record for this long (and nothing left to read) stops holding bucket close back
    idle_timeout_ms: int = 60_000
    # an order whose order_id was seen on its input partition within this much event time is counted once
    # (stream.core.dedup); 0: no deduplication
    dedup_window_ms: int = 7 * DAY_MS

    @property
    def season(self) -> int:
        """Buckets per seasonal cycle: a day of sub-daily buckets, else a week."""
        if self.bucket_ms < DAY_MS:
            return max(1, DAY_MS // self.bucket_ms)
        return max(1, WEEK_MS // self.bucket_ms)

    @classmethod
    def from_env(cls, env: _Environment) -> "TimeSettings":
        bucket, bucket_ms = env.duration("SALESCAST_BUCKET", "1d")
        return cls(bucket=bucket, bucket_ms=bucket_ms,
                   allowed_lateness_ms=env.integer("SALESCAST_ALLOWED_LATENESS_MS", 2 * DAY_MS),
                   max_future_ms=env.integer("SALESCAST_MAX_FUTURE_MS", DAY_MS),
                   clock=env.choice("SALESCAST_CLOCK", "wall", CLOCKS),
                   idle_timeout_ms=env.integer("SALESCAST_IDLE_TIMEOUT_MS", 60_000, minimum=100),
                   dedup_window_ms=0 if env.text("SALESCAST_DEDUP_WINDOW", "7d").strip() == "0" else
                   env.duration_ms("SALESCAST_DEDUP_WINDOW", "7d"))


@dataclass(frozen=True)
class ForecastSettings:
    """What is forecast, from how much history, for which SKUs."""

    horizon: int = 7
    history_buckets: int = 120  # buckets of history a SKU's window keeps
    # contract v1.1: a SKU with an event in the last `active_buckets` buckets gets a forecast at every close
    active_buckets: int = FORECASTER_INPUT_LENGTH
    # public holidays the forecaster is told of (salescast.models.forecast.calendar): "US", "AU-VIC"; "" none
    holidays_country: str = ""

    @classmethod
    def from_env(cls, env: _Environment) -> "ForecastSettings":
        return cls(horizon=env.integer("SALESCAST_HORIZON", 7, minimum=1),
                   history_buckets=env.integer("SALESCAST_HISTORY_BUCKETS", 120, minimum=90),
                   active_buckets=env.integer("SALESCAST_ACTIVE_BUCKETS", FORECASTER_INPUT_LENGTH, minimum=1),
                   holidays_country=env.holidays_country("SALESCAST_HOLIDAYS_COUNTRY"))


@dataclass(frozen=True)
class RecommendationSettings:
    """The user-item matrix the recommender reads, and the candidate index promotions target from."""

    user_item_cap: int = 200  # SKUs kept per user vector
    interaction_half_life_ms: int = 30 * DAY_MS
    interaction_weights: InteractionWeights = field(default_factory=InteractionWeights)
    affinity_top: int = 20  # SKUs per user sent to the candidate index
    candidates_per_sku: int = 200  # users kept per SKU in the candidate index

    @classmethod
    def from_env(cls, env: _Environment) -> "RecommendationSettings":
        weights = InteractionWeights(view=env.number("SALESCAST_WEIGHT_VIEW", 1.0),
                                     wishlist=env.number("SALESCAST_WEIGHT_WISHLIST", 2.0),
                                     cart=env.number("SALESCAST_WEIGHT_CART", 3.0),
                                     purchase=env.number("SALESCAST_WEIGHT_PURCHASE", 5.0))
        return cls(user_item_cap=env.integer("SALESCAST_USER_ITEM_CAP", 200, minimum=1),
                   interaction_half_life_ms=env.duration_ms("SALESCAST_INTERACTION_HALF_LIFE", "30d"),
                   interaction_weights=weights,
                   affinity_top=env.integer("SALESCAST_CF_AFFINITY_TOP", 20, minimum=1),
                   candidates_per_sku=env.integer("SALESCAST_CF_CANDIDATES_PER_SKU", 200, minimum=1))


def _promotions_from_env(env: _Environment) -> PromoPolicy:
    defaults = PromoPolicy()
    promo = PromoPolicy(
        overstock_days=env.number("SALESCAST_PROMO_OVERSTOCK_DAYS", defaults.overstock_days),
        affinity_min_users=env.integer("SALESCAST_PROMO_AFFINITY_MIN_USERS", defaults.affinity_min_users, minimum=1),
        affinity_max_conversion=env.number("SALESCAST_PROMO_AFFINITY_MAX_CONVERSION",
                                           defaults.affinity_max_conversion),
        max_discount=env.fraction("SALESCAST_PROMO_MAX_DISCOUNT", defaults.max_discount),
        min_margin=env.number("SALESCAST_PROMO_MIN_MARGIN", defaults.min_margin),
        discount_step=env.fraction("SALESCAST_PROMO_DISCOUNT_STEP", defaults.discount_step),
        validity_ms=env.duration_ms("SALESCAST_PROMO_VALIDITY", "3d"),
        holdout_fraction=env.fraction("SALESCAST_PROMO_HOLDOUT_FRACTION", defaults.holdout_fraction,
                                      allow_zero=True),
        max_targets=env.integer("SALESCAST_PROMO_MAX_TARGETS", defaults.max_targets, minimum=2),
        cooldown_ms=env.duration_ms("SALESCAST_PROMO_COOLDOWN", "7d"),
        max_open=env.integer("SALESCAST_PROMO_MAX_OPEN", defaults.max_open, minimum=1),
        daily_budget=env.number("SALESCAST_PROMO_DAILY_BUDGET", defaults.daily_budget),
        max_age_ms=env.duration_ms("SALESCAST_PROMO_MAX_AGE", "2d"),
        objective=env.choice("SALESCAST_PROMO_OBJECTIVE", defaults.objective, OBJECTIVES) or defaults.objective,
    )
    if promo.discount_step > promo.max_discount:
        env.errors.append(f"SALESCAST_PROMO_DISCOUNT_STEP={promo.discount_step} is above "
                          f"SALESCAST_PROMO_MAX_DISCOUNT={promo.max_discount}: no discount could be offered; "
                          "lower the step")
    return promo


@dataclass(frozen=True)
class StoreSettings:
    """The model store, and the rules for a retrained version going live."""

    path: Path = Path("./var/models")
    keep: int = 10  # versions kept per model (the current one and its predecessor always)
    margin: float = 0.02  # how much worse than live (relative) a retrained version may score and go live

    @classmethod
    def from_env(cls, env: _Environment, data_dir: Path) -> "StoreSettings":
        return cls(path=Path(env.text("SALESCAST_MODEL_STORE", str(data_dir / "models"))),
                   keep=env.integer("SALESCAST_MODEL_KEEP", 10, minimum=2),
                   margin=env.fraction("SALESCAST_MODEL_MARGIN", 0.02, allow_zero=True))


@dataclass(frozen=True)
class ServiceSettings:
    """Where a process keeps its state and serves HTTP and metrics."""

    data_dir: Path = Path("./var")
    metrics_port: int = 9108
    web_port: int = 6066
    advertised_url: str | None = None  # how other workers reach this one's HTTP API
    retrain_metrics_port: int = 9109  # `salescast retrain --every` serves its Prometheus metrics here
    # decoded table values a worker keeps in memory per table (stream.delivery.cache), besides those changed
    # since the last commit; a table that has this many changed values is written back early
    state_cache_keys: int = 50_000

    @property
    def web_url(self) -> str:
        return self.advertised_url or f"http://{socket.gethostname()}:{self.web_port}"

    @classmethod
    def from_env(cls, env: _Environment) -> "ServiceSettings":
        advertised = env.text("SALESCAST_ADVERTISED_URL", None)
        if advertised and not re.match(r"^https?://[^/\s]+(:\d+)?/?$", advertised):
            env.errors.append(f"SALESCAST_ADVERTISED_URL={advertised!r} is not like http://host:port")
        return cls(data_dir=Path(env.text("SALESCAST_DATA_DIR", "./var")),
                   metrics_port=env.port("SALESCAST_METRICS_PORT", 9108),
                   web_port=env.port("SALESCAST_WEB_PORT", 6066), advertised_url=advertised,
                   retrain_metrics_port=env.port("SALESCAST_RETRAIN_METRICS_PORT", 9109),
                   state_cache_keys=env.integer("SALESCAST_STATE_CACHE_KEYS", 50_000, minimum=1))


@dataclass(frozen=True)
class Settings:
    """Every setting, in sections: `settings.kafka.partitions`, `settings.time.bucket_ms`, ..."""

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    time: TimeSettings = field(default_factory=TimeSettings)
    forecasting: ForecastSettings = field(default_factory=ForecastSettings)
    recommendations: RecommendationSettings = field(default_factory=RecommendationSettings)
    promo: PromoPolicy = field(default_factory=PromoPolicy)  # SALESCAST_PROMO_*
    store: StoreSettings = field(default_factory=StoreSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        environment = _Environment(os.environ if env is None else env)
        service = ServiceSettings.from_env(environment)
        settings = cls(kafka=KafkaSettings.from_env(environment), time=TimeSettings.from_env(environment),
                       forecasting=ForecastSettings.from_env(environment),
                       recommendations=RecommendationSettings.from_env(environment),
                       promo=_promotions_from_env(environment),
                       store=StoreSettings.from_env(environment, service.data_dir), service=service)
        if environment.errors:
            raise SettingsError("invalid salescast settings:\n  - " + "\n  - ".join(environment.errors))
        return settings

    def described(self) -> dict:
        """Every setting as plain JSON values, secrets shown only as set or not (`salescast config`)."""
        return _described(self)


def _described(value):
    if dataclasses.is_dataclass(value):
        return {f.name: (("<set>" if getattr(value, f.name) else None) if f.metadata.get("secret")
                         else _described(getattr(value, f.name))) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): _described(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_described(item) for item in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
