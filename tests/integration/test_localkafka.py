"""`salescast kafka start|stop|status` behaviour a user sees."""

import socket

import pytest

from salescast.localkafka import BrokerError, LocalBroker, kafka_version

pytestmark = pytest.mark.integration


def test_a_taken_port_is_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(BrokerError, match=f"port {port} on 127.0.0.1 is already in use"):
            LocalBroker(directory=tmp_path, port=port).start()


def test_missing_java_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerError, match="`java` is not on PATH. Install a Java 17"):
        LocalBroker(directory=tmp_path, port=1).start()


def test_status_of_the_session_broker(kafka, tmp_path):
    assert kafka_version().startswith("4.")
    stopped = LocalBroker(directory=tmp_path, port=1)
    assert stopped.status() == "stopped" and stopped.stop(log=lambda m: None) is False
