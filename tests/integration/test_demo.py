"""`salescast demo` from nothing: its own broker, models trained first, LSTM forecasts and live
recommendations on screen."""

import os
import subprocess
import sys

import pytest

from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration


def test_demo_trains_a_model_then_shows_lstm_forecasts(tmp_path):
    env = {**os.environ, "SALESCAST_DATA_DIR": str(tmp_path / "var"), "SALESCAST_WEB_PORT": str(free_port()),
           "SALESCAST_METRICS_PORT": str(free_port()), "SALESCAST_RETRAIN_METRICS_PORT": str(free_port())}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("SALESCAST_APP_ID", None)  # the demo's own (tests/unit/test_agents.py sets one when collected)
    done = subprocess.run([sys.executable, "-m", "salescast.cli", "demo", "--port", str(free_port(pair=True)),
                           "--skus", "8", "--users", "300", "--days", "90", "--rate", "5000", "--speedup", "300000",
                           "--seconds", "100", "--retrain-every", "20s"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    logs = "\n".join(f"--- {name}:\n" + "\n".join((tmp_path / "var" / "demo" / name).read_text(errors="replace")
                                                  .splitlines()[-40:])
                     for name in ("worker.log", "generator.log") if (tmp_path / "var" / "demo" / name).exists())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + logs
    out = done.stdout
    shown = out[-3000:] + "\n" + logs  # what a failure below shows
    assert "no lstm, cf and promo model yet" in out
    assert "trained lstm" in out and "trained cf" in out and "trained promo" in out
    forecasts = [line for line in out.splitlines() if "closed" in line and "next p50" in line]
    assert any(" lstm:" in line for line in forecasts), shown
    assert any(line.endswith(" cold") for line in forecasts)  # the first days, before 28 days of history
    recommended = [line for line in out.splitlines() if "recommend for u-" in line]
    assert recommended and any(" cf:" in line and "fallback" not in line for line in recommended), shown
    assert any("recommend candidates for sku-" in line for line in out.splitlines())
    # the shop acts on the triggers it reads; their outcomes come when they end (3 simulated days later)
    assert any(" promo sku-" in line and "off to" in line for line in out.splitlines()), shown
    # the retrainer, started after 20 s, retrains from the worker's own state and announces each version
    assert "starting the retrainer" in out
    announced = [line for line in out.splitlines() if "retrained " in line]
    assert any("is a candidate" in line for line in announced), shown + "\n--- retrain.log:\n" + \
        "\n".join((tmp_path / "var" / "demo" / "retrain.log").read_text(errors="replace").splitlines()[-30:])
    assert any(" is live" in line or " rejected " in line for line in announced), shown
