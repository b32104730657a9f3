"""A secured cluster for real (issue 17.5): the local broker with SASL/SCRAM-SHA-512 over TLS, and the
worker, the generator and the retrainer against it with credentials from the environment and from files."""

import signal
import subprocess
import sys

import pytest

from salescast.localkafka import LocalBroker, free_port
from tests.integration.conftest import Worker, wait_for

pytestmark = pytest.mark.integration


def salescast(env: dict, cwd, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "salescast.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_worker_generator_and_retrainer_run_on_a_sasl_scram_tls_broker_and_keep_its_secret(tmp_path):
    broker = LocalBroker(directory=tmp_path / "kafka", port=free_port(pair=True), secure=True)
    broker.start(log=lambda message: None)
    worker = Worker(broker.bootstrap, tmp_path, broker.client_env())  # the password as a mounted file
    try:
        password = (tmp_path / "kafka" / "credentials" / "salescast.password").read_text()
        worker.start()
        # the generator with the password itself in its environment, the retrainer with both as files
        with_password = {k: v for k, v in worker.env.items() if k != "KAFKA_SASL_PASSWORD_FILE"}
        with_password["KAFKA_SASL_PASSWORD"] = password
        generated = salescast(with_password, tmp_path, "generate", "--seed", "4", "--skus", "12", "--users", "80",
                              "--days", "5", "--ignore-promotions")
        assert generated.returncode == 0, generated.stderr
        wait_for(lambda: worker.metric("salescast_events_consumed_total", topic="orders") > 0, timeout_s=90,
                 message="the worker consumed the generator's orders")

        def units_sold() -> float:
            status, sales = worker.http("/skus/sku-1/sales?buckets=30")
            return status == 200 and sum(b["units"] for b in sales["buckets"])

        wait_for(units_sold, timeout_s=60, message="sales counted")

        username_file = tmp_path / "username"
        username_file.write_text("salescast\n")
        as_files = {k: v for k, v in worker.env.items() if k != "KAFKA_SASL_USERNAME"}
        as_files["KAFKA_SASL_USERNAME_FILE"] = str(username_file)
        wait_for(lambda: salescast(as_files, tmp_path, "retrain", "--model", "cf", "--quiet").returncode == 0,
                 timeout_s=120, interval_s=5, message="the retrainer read the worker's state and trained")

        # wrong credentials: one clear line, and nothing else
        wrong = tmp_path / "wrong-password"
        wrong.write_text("not-the-password\n")
        refused = salescast({**worker.env, "KAFKA_SASL_PASSWORD_FILE": str(wrong),
                             "SALESCAST_DATA_DIR": str(tmp_path / "refused")}, tmp_path, "worker")
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines() == [
            f"salescast worker: the broker at {broker.bootstrap} refused the credentials of user 'salescast' "
            "(SCRAM-SHA-512): check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or their _FILE variants)"]
        untrusted = salescast({**with_password, "KAFKA_SSL_CAFILE": ""}, tmp_path, "generate", "--limit", "1")
        assert untrusted.returncode == 1 and "set KAFKA_SSL_CAFILE to the CA that signed it" in untrusted.stderr

        config = salescast(with_password, tmp_path, "config")
        assert config.returncode == 0 and '"sasl_password": "<set>"' in config.stdout
        for where, text in [("worker log", worker.log_path.read_text(errors="replace")), ("/metrics", worker.metrics()),
                            ("generator", generated.stdout + generated.stderr), ("config", config.stdout),
                            ("refusal", refused.stderr), ("untrusted", untrusted.stderr)]:
            assert password not in text, f"the password appears in the {where}"
        assert worker.process.poll() is None
    finally:
        worker.stop(signal.SIGKILL, timeout_s=10)
        broker.stop(log=lambda message: None)
