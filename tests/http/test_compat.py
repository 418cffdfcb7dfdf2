"""The older APIs' GET routes, read the way their clients read them (in process, the real HTTP stack).

The first older API's dashboard: `data.success`, then `data.predictions["BTCUSDT"]` with confidence and accuracy
on 0-100, flat `entry_price` / `stop_loss` / `take_profits[{level, price, eta}]` / `tp1..tp3` (+ `_eta`), and its
summary page's `summary[tf]`. The second older API's bots: `action_id`, `action_name`, `symbol` as they wrote it,
`confidence` on 0-1, an ISO `timestamp`, `strategy`, and a string `explanation`; its model info and health
objects. Every field is pinned against our own answer for the same request (never against another compat answer).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from starlette.testclient import TestClient

from service import SignalService
from signals.api.legacy import display_price, ppo_update, signal_item
from signals.contract import schemas
from signals.core.timeframes import timeframe_delta
from signals.features.ppo import PPO_OBS_SHAPE
from signals.models.registry import list_models, load_model
from signals.serving.catalog import ModelCatalog
from tests.support.fakes import separate_metrics
from tests.support.servers import local_client
from tests.support.world import World, copy_world, environment

BTC, ETH = "BTC/USDT", "ETH/USDT"
ITEM_FIELDS = {
    "symbol", "timeframe", "direction", "confidence", "accuracy", "accuracy_estimate", "current_price",
    "entry_price", "stop_loss", "take_profits", "tp1", "tp2", "tp3", "tp1_eta", "tp2_eta", "tp3_eta",
    "take_profit", "valid_until", "timestamp", "source", "status", "reason",
}  # fmt: skip


@pytest.fixture(scope="module")
def world(trained_world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = copy_world(trained_world, tmp_path_factory.mktemp("compat-world"))
    with environment(built.env()):
        yield built


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient]:
    with separate_metrics(), local_client(SignalService.to_asgi()) as test_client:
        yield test_client


def ours(client: TestClient, symbol: str, timeframe: str) -> dict[str, Any]:
    response = client.post("/predict", json={"symbol": symbol, "timeframe": timeframe})
    assert response.status_code == 200, response.text
    return dict(response.json())


def is_iso_utc(text: Any) -> bool:
    return isinstance(text, str) and text.endswith("Z") and datetime.fromisoformat(text) is not None


def assert_item_reads_as(item: dict[str, Any], signal: dict[str, Any]) -> None:
    """An older dashboard's card for `signal`: scales, flat levels, and NO_TRADE unless actionable."""
    assert ITEM_FIELDS <= set(item), ITEM_FIELDS - set(item)
    assert item["symbol"] == signal["symbol"].replace("/", "") and item["timeframe"] == signal["timeframe"]
    assert item["confidence"] == pytest.approx(100 * signal["confidence"], abs=0.01)
    assert item["accuracy"] == item["accuracy_estimate"] == pytest.approx(100 * signal["model_accuracy"], abs=0.01)
    assert 0 <= item["confidence"] <= 100 and 0 <= item["accuracy"] <= 100
    if signal.get("model_accuracy_ci"):  # the interval beside the accuracy, on the same 0-100 scale
        assert item["accuracy_ci"] == pytest.approx([100 * b for b in signal["model_accuracy_ci"]], abs=0.01)
    assert item["current_price"] == display_price(signal["current_price"])
    assert item["valid_until"] == signal["valid_until"] and is_iso_utc(item["timestamp"])
    assert item["source"] == signal["data_source"]
    if signal["actionable"]:
        levels = signal["levels"]
        assert item["direction"] == signal["direction"] and item["reason"] is None
        assert item["entry_price"] == display_price(levels["entry"])
        assert item["stop_loss"] == display_price(levels["stop_loss"])
        close = pd.Timestamp(signal["candle_time"]) + timeframe_delta(signal["timeframe"])
        for tp, ours_tp in zip(item["take_profits"], levels["take_profits"], strict=True):
            assert tp["level"] == ours_tp["level"] and tp["price"] == display_price(ours_tp["price"])
            assert pd.Timestamp(tp["eta"]) == close + timedelta(minutes=ours_tp["eta_minutes"])
            assert item[f"tp{tp['level']}"] == tp["price"] and item[f"tp{tp['level']}_eta"] == tp["eta"]
        assert item["take_profit"] == item["tp1"]
    else:  # older clients cannot read `actionable`: no plan, its reason, and the model's own call beside
        assert item["direction"] == "NO_TRADE" and item["model_direction"] == signal["direction"]
        assert item["reason"] == signal["abstain_reason"] and item["reason"]
        assert item["entry_price"] is None and item["stop_loss"] is None and item["take_profits"] == []
        assert all(item[k] is None for k in ("tp1", "tp2", "tp3", "tp1_eta", "tp2_eta", "tp3_eta", "take_profit"))
    assert item["status"] in {"active", "no_trade", "stale"} and (item["status"] == "stale") == signal["stale"]


def test_the_dashboards_grid_finds_every_pair_under_its_compact_name(client: TestClient) -> None:
    response = client.get("/api/predictions", params={"timeframe": "1h", "symbols": "BTCUSDT,eth-usdt"})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["success"] is True and data["warming_up"] is False and is_iso_utc(data["timestamp"])
    assert data["count"] == 2 == len(data["predictions"])
    for symbol in (BTC, ETH):
        assert_item_reads_as(data["predictions"][symbol.replace("/", "")], ours(client, symbol, "1h"))


def test_the_grid_defaults_to_15m_like_the_older_server_and_reports_failures_apart(client: TestClient) -> None:
    data = client.get("/api/predictions").json()
    assert data["success"] is True and data["timeframe"] == "15m"
    assert list(data["predictions"]) == ["BTCUSDT"]  # the only pair with a 15m model in this world
    assert_item_reads_as(data["predictions"]["BTCUSDT"], ours(client, BTC, "15m"))
    with_failure = client.get("/api/predictions", params={"timeframe": "1h", "symbols": "BTCUSDT,SOLUSDT"}).json()
    assert with_failure["count"] == 1 and with_failure["errors"]["SOLUSDT"]["status"] == 404


def test_one_pair_answers_its_prediction_envelope(client: TestClient) -> None:
    data = client.get("/api/predictions/BTC-USDT", params={"timeframe": "1h"}).json()
    assert data["success"] is True and data["symbol"] == "BTCUSDT" and is_iso_utc(data["timestamp"])
    assert_item_reads_as(data["prediction"], ours(client, BTC, "1h"))


def test_the_summary_page_reads_one_item_per_timeframe(client: TestClient) -> None:
    data = client.get("/api/predictions/BTCUSDT/summary").json()
    assert data["status"] == "success" and data["success"] is True and data["symbol"] == "BTCUSDT"
    assert set(data["summary"]) == {"15m", "1h"}  # BTC has models on these two; 4h and 1d are reported apart
    for timeframe, item in data["summary"].items():
        assert_item_reads_as(item, ours(client, BTC, timeframe))
    assert set(data["errors"]) == {"4h", "1d"}
    assert data["consensus"]["direction"] in {"LONG", "SHORT", "NO_TRADE"}


def test_an_actionable_signal_reads_with_its_flat_levels() -> None:
    """The tiny world's models have no edge; the shape of a plan is pinned on a served actionable signal."""
    signal = schemas.Signal.model_validate(
        {
            "symbol": BTC,
            "timeframe": "1h",
            "direction": "LONG",
            "confidence": 0.61,
            "probabilities": {"SHORT": 0.14, "NO_TRADE": 0.25, "LONG": 0.61},
            "actionable": True,
            "abstain_reason": None,
            "edge": {"verdict": "positive", "metric": "expectancy_after_costs_pct", "value": 0.002, "n": 120},
            "break_even_hit_rate": 0.55,
            "model_version": "v1",
            "model_accuracy": 0.43,
            "baseline_accuracy": 0.41,
            "candle_time": "2026-11-20T09:00:00Z",
            "prediction_time": "2026-11-20T10:00:03Z",
            "valid_until": "2026-11-20T11:00:00Z",
            "horizon_bars": 10,
            "expires_at": "2026-11-20T20:00:00Z",
            "current_price": 60000.0,
            "levels": {
                "entry": 60000.0,
                "stop_loss": 59100.0,
                "atr": 600.0,
                "risk_reward": 1.0,
                "take_profits": [
                    {"level": k, "price": 60000.0 + 900.0 * k, "r_multiple": float(k), "eta_minutes": 60 * k * k}
                    for k in (1, 2, 3)
                ],
            },
            "data_source": "ccxt:binance",
            "stale": False,
        }  # fmt: skip
    )
    item = signal_item(signal)
    assert_item_reads_as(item, signal.model_dump(mode="json"))
    assert item["direction"] == "LONG" and item["status"] == "active"
    assert (item["tp1"], item["tp2"], item["tp3"]) == (60900.0, 61800.0, 62700.0)
    assert (item["tp1_eta"], item["tp3_eta"]) == ("2026-11-20T11:00:00Z", "2026-11-20T19:00:00Z")


def test_the_ppo_bot_reads_its_action_with_the_symbol_it_wrote(client: TestClient, world: World) -> None:
    response = client.get(
        "/api/v1/prediction/predict/BTC-USDT",
        params={"include_explanation": "true", "position": "long", "entry_price": "60000"},
    )
    assert response.status_code == 200, response.text
    data = response.json()
    action = client.post(
        "/action",
        json={"symbol": BTC, "position": {"side": "long", "entry_price": 60000}, "include_explanation": True},
    ).json()
    assert data["symbol"] == "BTC-USDT" and data["strategy"] == "PPO"
    assert data["model_action_id"] == action["action_id"] and data["model_action_name"] == action["action_name"]
    assert data["actionable"] == action["actionable"] and data["abstain_reason"] == action["abstain_reason"]
    shown = action["action_name"] if action["actionable"] else "HOLD"  # never an action the server does not back
    assert data["action_name"] == shown and data["action_id"] == ["HOLD", "BUY", "SELL"].index(shown)
    assert data["confidence"] == pytest.approx(action["confidence"]) and 0 <= data["confidence"] <= 1
    assert data["current_price"] == display_price(action["current_price"])
    assert data["model_version"] == action["model_version"]
    assert is_iso_utc(data["timestamp"])
    assert isinstance(data["explanation"], str) and data["explanation"] == action["explanation"]["summary"]
    assert data["explanation_details"]["unrealized_return"] == action["explanation"]["unrealized_return"]
    plain = client.get("/api/v1/prediction/predict/ETHUSDT").json()
    assert plain["symbol"] == "ETHUSDT" and plain["explanation"] is None


@pytest.mark.parametrize("actionable", [True, False])
def test_a_policy_call_reads_as_hold_on_the_older_shapes_unless_actionable(actionable: bool) -> None:
    """The Shadow card and the bot draw `action_name`: a SELL the server does not stand behind reads HOLD, the
    policy's own SELL beside it, with the reason; the symbol as the client wrote it."""
    action = schemas.Action.model_validate(
        {
            "symbol": BTC,
            "timeframe": "1h",
            "action_id": 2,
            "action_name": "SELL",
            "probabilities": {"HOLD": 0.2, "BUY": 0.1, "SELL": 0.7},
            "confidence": 0.7,
            "actionable": actionable,
            "abstain_reason": None if actionable else "no demonstrated edge (none)",
            "edge": {"verdict": "positive" if actionable else "none", "metric": "expectancy_after_costs_pct"},
            "current_price": 88337.188571,
            "candle_time": "2026-11-20T09:00:00Z",
            "valid_until": "2026-11-20T11:00:00Z",
            "model_version": "v1",
            "data_source": "synthetic",
            "stale": False,
        }
    )
    update = schemas.LegacyPpoUpdate.model_validate(ppo_update(action, symbol_as_written="BTC-USDT"))
    assert (update.action_name, update.action_id) == (("SELL", 2) if actionable else ("HOLD", 0))
    assert (update.model_action_name, update.model_action_id) == ("SELL", 2)
    assert update.actionable is actionable and update.abstain_reason == action.abstain_reason
    assert update.symbol == "BTC-USDT" and update.pair == BTC and update.current_price == 88337.19
    assert ppo_update(action)["symbol"] == "BTCUSDT"  # compact when the client named no spelling


@pytest.mark.parametrize(
    ("price", "shown"),
    [(88337.188571, 88337.19), (63103.97370149669, 63103.97), (2.345678912, 2.345679), (0.0000123456789, 1.234568e-5)],
)
def test_older_shapes_show_prices_as_a_price_display_does(price: float, shown: float) -> None:
    assert display_price(price) == shown and display_price(None) is None


def test_model_info_is_one_object_describing_the_policy(client: TestClient, world: World) -> None:
    data = client.get("/api/v1/prediction/model/info").json()
    lookback, features = PPO_OBS_SHAPE
    assert data["loaded"] is True and data["model_type"] == "PPO" and data["policy"] == "MlpPolicy"
    assert data["observation_space"] == f"Box({lookback}, {features})" == "Box(50, 10)"
    assert data["action_space"] == "Discrete(3)" and data["window_size"] == 50 and data["num_features"] == 10
    assert data["model_version"] == load_model(f"ppo-{world.ppo_timeframe}:latest").version
    assert "ppo-1h" in [m["name"] for m in data["models"]] and {m["family"] for m in data["models"]} == {"ppo"}


def test_model_health_says_healthy_when_the_policy_serves(client: TestClient) -> None:
    response = client.get("/api/v1/prediction/model/health")
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "healthy" and data["model_loaded"] is True
    assert data["service"] == "signal_service" and "ppo-1h" in data["message"]


def test_model_health_says_unavailable_without_a_policy(world: World) -> None:
    stored = {m.tag.name for m in list_models()}  # the session's store may hold other tests' policies
    without = next(tf for tf in ("1d", "4h", "15m", "30m", "2h") if f"ppo-{tf}" not in stored)
    with (
        environment({"SIGNALS_PPO_TIMEFRAME": without}),
        separate_metrics(),
        local_client(SignalService.to_asgi()) as other,
    ):
        response = other.get("/api/v1/prediction/model/health")
        assert response.status_code == 200  # as the older API: the body says it
        data = response.json()
        assert data["status"] == "unavailable" and data["model_loaded"] is False
        assert f"signals train ppo --timeframe {without}" in data["message"]
        assert other.get("/api/v1/prediction/model/info").json()["loaded"] is False


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/api/predictions/XXX", 400, "BTC/USDT, BTCUSDT, BTC-USDT"),
        ("/api/predictions/BTCUSDT?timeframe=3h", 400, "timeframe: Input should be '1m', '5m'"),
        ("/api/predictions/SOLUSDT?timeframe=1h", 404, "available: BTC/USDT 15m"),
        ("/api/predictions?timeframe=3h", 400, "timeframe: Input should be '1m', '5m'"),
        ("/api/predictions?symbols=BTCUSDT,,ETHUSDT", 400, "empty item"),
        ("/api/predictions?symbols=BTCUSDT,ETHUSDT,SOLUSDT,ADAUSDT", 400, "at most 3"),
        ("/api/predictions/XXX/summary", 400, "BTC/USDT, BTCUSDT, BTC-USDT"),
        ("/api/v1/prediction/predict/XXX", 400, "BTC/USDT, BTCUSDT, BTC-USDT"),
        ("/api/v1/prediction/predict/BTCUSDT?timeframe=1d", 404, "no PPO policy"),
        ("/api/v1/prediction/predict/BTCUSDT?entry_price=1e-300", 400, "entry_price"),
        ("/api/v1/prediction/predict/BTCUSDT?timeframe=7m", 400, "timeframe"),
        ("/api/v1/prediction/predict/BTCUSDT?position=short", 400, "position"),
        ("/api/v1/prediction/predict/BTCUSDT?entry_price=-1", 400, "entry_price"),
    ],
)
def test_errors_answer_the_older_envelope_with_their_status(
    client: TestClient, path: str, status: int, says: str
) -> None:
    response = client.get(path)
    assert response.status_code == status, response.text
    data = response.json()
    assert data["success"] is False and says in data["detail"] and data["error"]
    assert data["status"] == status


def test_numbers_in_items_are_finite(client: TestClient) -> None:
    data = client.get("/api/predictions", params={"timeframe": "1h"}).json()
    for item in data["predictions"].values():
        numbers = [v for v in item.values() if isinstance(v, float)]
        assert numbers and all(math.isfinite(v) for v in numbers)


def test_catalog_and_compat_agree_on_the_pairs(client: TestClient, world: World) -> None:
    from signals.core.settings import get_settings

    catalog = ModelCatalog.from_store(get_settings())
    data = client.get("/api/predictions", params={"timeframe": "1h"}).json()
    assert sorted(data["predictions"]) == sorted(s.replace("/", "") for s in catalog.cnn_symbols("1h"))


@pytest.mark.parametrize(
    ("route", "url"),
    [
        ("/api/predictions", "/api/predictions?timeframe=1h"),
        ("/api/predictions/{symbol}", "/api/predictions/BTCUSDT?timeframe=1h"),
        ("/api/predictions/{symbol}/summary", "/api/predictions/BTCUSDT/summary"),
        ("/api/v1/prediction/predict/{symbol}", "/api/v1/prediction/predict/BTCUSDT?include_explanation=true"),
        ("/api/v1/prediction/model/info", "/api/v1/prediction/model/info"),
        ("/api/v1/prediction/model/health", "/api/v1/prediction/model/health"),
        ("/api/candles/{symbol}", "/api/candles/BTCUSDT?timeframe=1h&limit=5"),
    ],
)
def test_each_answer_is_exactly_the_model_docs_json_publishes_for_it(client: TestClient, route: str, url: str) -> None:
    answer = client.get("/docs.json").json()["paths"][route]["get"]["responses"]["200"]
    ref = answer["content"]["application/json"]["schema"]["$ref"]
    model = getattr(schemas, ref.rsplit("/", 1)[1])
    response = client.get(url)
    assert response.status_code == 200, response.text
    model.model_validate(response.json())  # the shapes forbid extra fields: every field published, none invented
