import pytest

from salescast.stream.core.settings import Settings, SettingsError, parse_duration_ms
from salescast.stream.kafka import client_options


def test_defaults_are_the_contract_defaults():
    s = Settings.from_env({})
    assert s.bootstrap_servers == "localhost:9092" and s.security_protocol == "PLAINTEXT"
    assert s.partitions == 8 and s.bucket == "1d" and s.bucket_ms == 86_400_000 and s.horizon == 7
    assert s.allowed_lateness_ms == 172_800_000 and s.max_future_ms == 86_400_000
    assert str(s.data_dir) == "var" and str(s.model_store) == "var/models"
    assert s.metrics_port == 9108 and s.web_port == 6066
    assert s.topic("promo_triggers") == "promo-triggers" and s.topic("dead_letters") == "dead-letters"


def test_overrides():
    s = Settings.from_env({"SALESCAST_TOPIC_ORDERS": "shop1.orders", "SALESCAST_BUCKET": "1h",
                           "SALESCAST_DATA_DIR": "/data", "KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2"})
    assert s.topic("orders") == "shop1.orders" and s.bucket_ms == 3_600_000 and s.season == 24
    assert str(s.model_store) == "/data/models"
    assert client_options(s)["bootstrap_servers"] == ["a:1", "b:2"]


def test_every_error_is_reported_at_once_with_what_to_do():
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"SALESCAST_PARTITIONS": "zero", "SALESCAST_BUCKET": "daily",
                           "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SALESCAST_TOPIC_CLICKS": "orders",
                           "KAFKA_SSL_CAFILE": "/nonexistent.pem"})
    text = str(caught.value)
    assert "SALESCAST_PARTITIONS='zero' is not an integer" in text
    assert "SALESCAST_BUCKET" in text and "1h, 1d" in text
    assert "needs KAFKA_SASL_MECHANISM" in text and "needs KAFKA_SASL_USERNAME" in text
    assert "two topics have the same name" in text
    assert "KAFKA_SSL_CAFILE" in text and "no such file" in text


def test_sasl_options_reach_the_kafka_client():
    s = Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                           "KAFKA_SASL_USERNAME": "shop", "KAFKA_SASL_PASSWORD": "secret"})
    options = client_options(s)
    assert options["sasl_mechanism"] == "SCRAM-SHA-256" and options["sasl_plain_password"] == "secret"
    assert "secret" not in repr(s)


@pytest.mark.parametrize("text,ms", [("1h", 3_600_000), ("15m", 900_000), ("1d", 86_400_000), ("500ms", 500)])
def test_durations(text, ms):
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["0d", "1y", "", "d1"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration_ms(text)


def test_advertised_url_is_validated():
    assert Settings.from_env({"SALESCAST_ADVERTISED_URL": "http://10.0.0.5:6066"}).web_url == "http://10.0.0.5:6066"
    assert Settings.from_env({"SALESCAST_WEB_PORT": "7000"}).web_url.endswith(":7000")
    with pytest.raises(SettingsError, match="SALESCAST_ADVERTISED_URL"):
        Settings.from_env({"SALESCAST_ADVERTISED_URL": "10.0.0.5"})
