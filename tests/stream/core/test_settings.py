import json

import pytest

from salescast.stream.core.settings import Settings, SettingsError, parse_duration_ms
from salescast.stream.kafka import client_options


def test_defaults_are_the_contract_defaults():
    s = Settings.from_env({})
    assert s.kafka.bootstrap_servers == "localhost:9092" and s.kafka.security_protocol == "PLAINTEXT"
    assert s.kafka.partitions == 8 and s.time.bucket == "1d" and s.time.bucket_ms == 86_400_000
    assert s.forecasting.horizon == 7
    assert s.time.allowed_lateness_ms == 172_800_000 and s.time.max_future_ms == 86_400_000
    assert str(s.service.data_dir) == "var" and str(s.store.path) == "var/models"
    assert s.service.metrics_port == 9108 and s.service.web_port == 6066
    assert s.kafka.topic("promo_triggers") == "promo-triggers" and s.kafka.topic("dead_letters") == "dead-letters"
    assert s == Settings()  # the sections' own defaults are the environment's defaults


def test_overrides():
    s = Settings.from_env({"SALESCAST_TOPIC_ORDERS": "shop1.orders", "SALESCAST_BUCKET": "1h",
                           "SALESCAST_DATA_DIR": "/data", "KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2"})
    assert s.kafka.topic("orders") == "shop1.orders" and s.time.bucket_ms == 3_600_000 and s.time.season == 24
    assert str(s.store.path) == "/data/models"
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
    advertised = Settings.from_env({"SALESCAST_ADVERTISED_URL": "http://10.0.0.5:6066"})
    assert advertised.service.web_url == "http://10.0.0.5:6066"
    assert Settings.from_env({"SALESCAST_WEB_PORT": "7000"}).service.web_url.endswith(":7000")
    with pytest.raises(SettingsError, match="SALESCAST_ADVERTISED_URL"):
        Settings.from_env({"SALESCAST_ADVERTISED_URL": "10.0.0.5"})


def test_ports_out_of_range_are_reported():
    with pytest.raises(SettingsError, match="SALESCAST_METRICS_PORT=70000 is not a TCP port"):
        Settings.from_env({"SALESCAST_METRICS_PORT": "70000"})


def test_each_section_reads_its_own_variables():
    s = Settings.from_env({"SALESCAST_CF_AFFINITY_TOP": "7", "SALESCAST_PROMO_MAX_AGE": "3d",
                           "SALESCAST_MODEL_KEEP": "4", "SALESCAST_ACTIVE_BUCKETS": "14", "SALESCAST_CLOCK": "events"})
    assert s.recommendations.affinity_top == 7 and s.promo.max_age_ms == 3 * 86_400_000
    assert s.store.keep == 4 and s.forecasting.active_buckets == 14 and s.time.clock == "events"


def test_kafka_credentials_come_from_files_too_and_never_show(tmp_path):
    """Issue 17.5: secrets mounted as files (KAFKA_SASL_*_FILE); errors and `salescast config` never show one."""
    (tmp_path / "password").write_text("s3cr3t-value\n")
    (tmp_path / "user").write_text("shop\n")
    base = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"}
    settings = Settings.from_env({**base, "KAFKA_SASL_USERNAME_FILE": str(tmp_path / "user"),
                                  "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "password")})
    assert (settings.kafka.sasl_username, settings.kafka.sasl_password) == ("shop", "s3cr3t-value")
    described = settings.described()
    assert described["kafka"]["sasl_password"] == "<set>" and described["kafka"]["sasl_username"] == "shop"
    assert "s3cr3t-value" not in json.dumps(described) and "s3cr3t-value" not in repr(settings)
    with pytest.raises(SettingsError) as both:
        Settings.from_env({**base, "KAFKA_SASL_USERNAME": "shop", "KAFKA_SASL_PASSWORD": "s3cr3t-value",
                           "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "password")})
    assert "KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE are both set" in str(both.value)
    with pytest.raises(SettingsError) as missing:
        Settings.from_env({**base, "KAFKA_SASL_USERNAME": "shop", "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "nope")})
    assert "KAFKA_SASL_PASSWORD_FILE=" in str(missing.value) and "cannot be read" in str(missing.value)
    assert "s3cr3t-value" not in str(both.value) + str(missing.value)


def test_the_holidays_country_is_checked_at_start_up():
    assert Settings.from_env({"SALESCAST_HOLIDAYS_COUNTRY": "AU-VIC"}).forecasting.holidays_country == "AU-VIC"
    assert Settings.from_env({}).forecasting.holidays_country == ""
    with pytest.raises(SettingsError, match="SALESCAST_HOLIDAYS_COUNTRY='Narnia'.*ISO 3166 country code"):
        Settings.from_env({"SALESCAST_HOLIDAYS_COUNTRY": "Narnia"})
