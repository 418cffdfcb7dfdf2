"""Alerts and the Telegram bot with a real `bentoml serve`: the real python-telegram-bot against the local Bot API
server, a real webhook receiver, and subscriptions made with the CLI.

A user's command in, the bot's reply out; a chat that subscribed gets the alert of a model promotion; a webhook
gets every refreshed signal, signed, soon after the refresh (the time is saved in test-artifacts/).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import bentoml
import httpx
import pytest
import sqlalchemy as sa

from signals.alerts.webhook import verify
from signals.data.store import CandleStore
from signals.ledger.schema import alert_outbox, alert_subscriptions, model_events
from signals.models.cnn_lstm.network import CnnLstmConfig
from signals.models.cnn_lstm.training import TrainConfig
from signals.models.registry import list_models
from signals.pipelines import train_cnn_lstm_models
from signals.testing.fake_telegram import FakeTelegram
from tests.support.browser import ARTIFACTS
from tests.support.receiver import Receiver, webhook_receiver
from tests.support.servers import Server, bentoml_server
from tests.support.world import EXCHANGE, World, copy_world, new_candle

# The receiver listens on http://127.0.0.1: the webhook policy refuses that unless the operator allows it.
LOCAL_RECEIVERS = {"SIGNALS_WEBHOOK_ALLOW_HTTP": "true", "SIGNALS_WEBHOOK_ALLOW_PRIVATE": "true"}

pytestmark = pytest.mark.slow
CHAT = 4242


@pytest.fixture(scope="module")
def world(trained_world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = copy_world(trained_world, tmp_path_factory.mktemp("alerts-world"))
    tiny = CnnLstmConfig(conv_channels=(8,), lstm_hidden=8, head_hidden=8)
    store = CandleStore(built.data_dir)  # a second version of BTC 1h, to promote the first one back
    (second,) = train_cnn_lstm_models(
        store, EXCHANGE, ["BTC/USDT"], "1h", TrainConfig(epochs=1, max_bars=900, seed=2), tiny
    )
    yield built
    for model in second.stored:  # the session's model store as the other modules know it: one version each
        bentoml.models.delete(model.tag)


@pytest.fixture(scope="module")
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as api:
        yield api


@pytest.fixture(scope="module")
def server(world: World, telegram: FakeTelegram, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        **world.env(),
        **LOCAL_RECEIVERS,
        "SIGNALS_TELEGRAM_TOKEN": telegram.token,
        "SIGNALS_TELEGRAM_API_URL": telegram.url,
    }
    with bentoml_server(env, tmp_path_factory.mktemp("alerts-logs"), name="alerts") as running:
        yield running


def said(telegram: FakeTelegram, text: str, expect: str) -> str:
    start = len(telegram.sent)
    telegram.user_says(text, chat_id=CHAT)
    message = telegram.wait_for_message(lambda m: telegram.sent.index(m) >= start and expect in m["text"])
    return str(message["text"])


def test_the_bot_answers_status_signal_summary_and_help(server: Server, telegram: FakeTelegram) -> None:
    status = said(telegram, "/status", "PPO on BTC/USDT 1h")
    assert "model ppo-1h:" in status and "edge:" in status and "Paper trading only" in status
    assert "no recommendation:" in status  # the tiny policy has no edge, and says so
    signal = said(telegram, "/signal ETHUSDT 1h", "ETH/USDT 1h: the model says")
    assert "Not actionable:" in signal and "walk-forward accuracy" in signal
    summary = said(telegram, "/summary BTCUSDT", "BTC/USDT on every timeframe")
    assert "1h:" in summary and "Consensus" in summary
    assert "Sorry:" in said(telegram, "/signal NOTASYMBOL", "Sorry")
    assert "/subscribe" in said(telegram, "/help", "/status")


def test_a_subscribed_chat_gets_the_alert_of_a_promotion_and_none_after_unsubscribing(
    server: Server, telegram: FakeTelegram, world: World
) -> None:
    assert "Subscribed" in said(telegram, "/subscribe", "Subscribed")
    versions = [str(m.tag.version) for m in list_models() if m.tag.name == "cnn-lstm-btc-usdt-1h"]
    assert len(versions) >= 2
    served = httpx.post(f"{server.url}/predict", json={"symbol": "BTC/USDT", "timeframe": "1h"}).json()["model_version"]
    other = next(v for v in versions if v != served)
    promoted = httpx.post(
        f"{server.url}/admin/promote",
        json={"model": "cnn-lstm-btc-usdt-1h", "version": other, "force": True},
        timeout=60,
    )
    assert promoted.status_code == 200 and promoted.json()["promoted"] is True
    alert = telegram.wait_for_message(lambda m: "Alert model.promoted" in m["text"] and m["chat"]["id"] == CHAT)
    assert f"{served} -> {other}" in alert["text"]
    assert "Unsubscribed" in said(telegram, "/unsubscribe", "Unsubscribed")
    before = len(telegram.sent)
    rolled = httpx.post(f"{server.url}/admin/rollback", json={"model": "cnn-lstm-btc-usdt-1h"}, timeout=60)
    assert rolled.status_code == 200 and rolled.json()["to_version"] == served, rolled.text
    # An alert is written with its event, in the same transaction (tests/unit/alerts): the rollback is recorded and
    # the chat has no message for it in the outbox, so none can ever be sent. No wait for a message that must not come.
    ledger = sa.create_engine(f"sqlite:///{world.data_dir / 'signals.db'}")
    try:
        with ledger.connect() as connection:
            kinds = connection.execute(sa.select(model_events.c.kind).order_by(model_events.c.id)).scalars().all()
            chat = (alert_subscriptions.c.kind == "telegram") & (alert_subscriptions.c.target == str(CHAT))
            to_chat = connection.execute(
                sa.select(alert_outbox.c.event_type)
                .join(alert_subscriptions, alert_subscriptions.c.id == alert_outbox.c.subscription_id)
                .where(chat)
            ).scalars()
            assert kinds[-2:] == ["promote", "rollback"] and list(to_chat) == ["model.promoted"]
    finally:
        ledger.dispose()
    assert not [m for m in telegram.sent[before:] if "Alert" in m["text"]]


def test_a_webhook_gets_every_refreshed_signal_signed_soon_after_the_refresh(server: Server, world: World) -> None:
    with webhook_receiver() as receiver:
        secret = add_webhook(world, receiver)
        pairs = [s for s, tf in world.models if tf == "1h"]
        new_candle(world, "1h")
        started = time.time()
        refreshed = httpx.post(f"{server.url}/admin/refresh", json={"timeframe": "1h"}, timeout=60)
        assert refreshed.status_code == 200 and refreshed.json()["signals"] == len(pairs)
        deliveries = receiver.wait_for(len(pairs), timeout_s=30)
        latency = [d.at - started for d in deliveries]
    assert sorted(d.payload["data"]["signal"]["symbol"] for d in deliveries) == sorted(pairs)
    assert all(verify(secret, d.headers, d.body) and d.event == "signal.recorded" for d in deliveries)
    assert len({d.key for d in deliveries}) == len(deliveries)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "webhook-latency.json").write_text(
        json.dumps({"from_refresh_request_s": [round(x, 3) for x in latency], "signals": len(pairs)})
    )
    assert max(latency) < 10, latency


def add_webhook(world: World, receiver: Receiver) -> str:
    """`signals alerts add` against the server's ledger; the secret it printed."""
    command = [str(Path(sys.executable).parent / "signals"), "alerts", "add", receiver.url]
    command += ["--events", "signal.recorded", "--all-signals", "--data-dir", str(world.data_dir)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env={**_env(world)})
    assert done.returncode == 0, done.stderr
    secret = next(line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith("secret"))
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "signals"), "alerts", "list", "--json", "--data-dir", str(world.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(world),
    )
    assert receiver.url in listed.stdout
    return secret


def _env(world: World) -> dict[str, str]:
    import os

    return {**os.environ, **world.env(), **LOCAL_RECEIVERS}
