"""One typed settings object; every knob is an environment variable prefixed ``SIGNALS_``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from signals.core.errors import SignalsError
from signals.core.symbols import current_symbol, normalize_symbol
from signals.core.timeframes import MODEL_TIMEFRAMES

# The 34 USDT pairs of ../shared/data under the names they trade as now (POL and S there are stored as MATIC and
# FTM: `symbols.RENAMED`): the default universe for demo data, training and live use.
DEFAULT_UNIVERSE: tuple[str, ...] = tuple(
    f"{base}/USDT"
    for base in (
        "AAVE APT ARB ATOM AVAX BCH BTC DOGE ETC ETH FET HBAR ICP INJ LDO LINK LTC "
        "MKR NEAR OP PEPE POL RUNE S SEI SHIB SOL STX SUI TIA TRX UNI WLD XRP"
    ).split()
)


Scope = Literal["read", "admin"]
TRAFFIC_TIMEOUT_S = 10  # BentoML's `traffic.timeout` of the API service (service.py): its 504 is outside our shape
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


class ApiKey(BaseModel):
    """One API key, as the server keeps it: the SHA-256 of the key, never the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 (hex) of the key")
    scopes: tuple[Scope, ...] = ("read",)
    rate_per_minute: int | None = Field(600, ge=1, description="Requests per minute per worker; null: no limit.")


class Settings(BaseSettings):
    """Configuration of the CLI and the server, read once from the environment (and `.env`)."""

    model_config = SettingsConfigDict(env_prefix="SIGNALS_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Root of the Parquet candle store.")
    exchange: str = Field("binance", description="ccxt exchange id whose candles are stored and served.")
    exchange_url: str | None = Field(
        None, description="Base URL that replaces the exchange's API host (e.g. the local test exchange)."
    )
    exchange_timeout_ms: int = Field(10_000, gt=0, description="ccxt request timeout.")
    exchange_retries: int = Field(4, ge=0, description="Retries on network errors, 429 and 5xx.")
    exchange_backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubles each retry.")
    exchange_budget_s: float = Field(
        2.0, gt=0, description="A request waits at most this long for the exchange (503 + Retry-After after it)."
    )
    exchange_breaker_failures: int = Field(5, ge=1, description="Failed fetches in a row that open the circuit.")
    exchange_breaker_cooldown_s: float = Field(30.0, gt=0, description="How long an open circuit fails fast.")
    universe: list[str] = Field(
        default_factory=lambda: list(DEFAULT_UNIVERSE),
        description="Pairs served and trained (JSON list); a renamed pair's old name (MATIC/USDT, FTM/USDT) reads "
        "as its current one (POL/USDT, S/USDT), whose history is what is stored under the old name.",
    )
    timeframes: list[str] = Field(default_factory=lambda: list(MODEL_TIMEFRAMES))
    device: Literal["auto", "cpu", "cuda"] = "auto"
    source: Literal["store", "live", "simulated"] = Field(
        "store",
        description="Candles from the Parquet store, live from the exchange through ccxt, or the simulated demo "
        "market (the synthetic store, extended to now as time goes on).",
    )
    stale_grace_s: float = Field(120.0, ge=0, description="A signal is stale when its candle is older than tf + this.")
    stop_atr: float = Field(1.5, gt=0, description="Stop-loss distance in ATRs (and the first target: 1 R).")
    fee: float = Field(0.001, ge=0, lt=0.1, description="Trading fee per side, a fraction of the notional.")
    slippage: float = Field(0.0005, ge=0, lt=0.1, description="Slippage per side, a fraction of the price.")
    take_profit_r: list[float] = Field(default_factory=lambda: [1.0, 2.0, 3.0], description="Take-profit R multiples.")
    ppo_timeframe: str = Field("1h", description="Timeframe of the PPO policy used when /action names none.")
    signal_cache_size: int = Field(4096, ge=0, description="Signals kept per (model version, last closed candle).")
    max_batch_size: int = Field(64, ge=1, description="Adaptive batching: most windows per runner call.")
    max_latency_ms: int = Field(1000, ge=1, description="Adaptive batching deadline (generous: it sheds load).")
    cnn_lstm_url: str | None = Field(None, description="The CNN-LSTM runner as a service of its own (URL).")
    ppo_url: str | None = Field(None, description="The PPO runner as a service of its own (URL).")
    families_url: str | None = Field(None, description="The installed families' runner as a service of its own (URL).")
    runner_timeout_s: float = Field(
        5.0, gt=0, description="A runner call that takes longer is a 503 (below the 10 s request timeout)."
    )
    warm_up: bool = Field(
        True, description="Compute every served pair once at start, before /readyz is ready (requests meet the cache)."
    )
    api_workers: int = Field(1, ge=1, description="Processes of the API service (each with its own signal cache).")
    database_url: str | None = Field(
        None, description="The ledger database (SQLAlchemy URL); default: SQLite at <data_dir>/signals.db."
    )
    scheduler: bool = Field(True, description="Refresh every signal at each candle close (one refresh per candle).")
    scheduler_delay_s: float = Field(5.0, ge=0, description="Wait after a candle closes before asking for it.")
    scheduler_retries: int = Field(3, ge=0, description="Retries of a failed pair within one refresh.")
    refresh_lease_s: float = Field(120.0, gt=0, description="How long a refresh may run before another takes it over.")
    clock_offset_s: float = Field(
        0.0, description="Tests only: the server's clock is the wall clock shifted by this many seconds."
    )
    ledger_queue: int = Field(10_000, ge=1, description="Signals waiting to be recorded before new ones are dropped.")
    ledger_retry_queue: int = Field(
        10_000,
        ge=0,
        description="Records kept for a retry while the ledger database does not answer; beyond it they are dropped "
        "(counted in /status and signals_ledger_dropped).",
    )
    ledger_retry_s: float = Field(5.0, gt=0, description="Seconds between retries of records the ledger refused.")
    probation_calls: int = Field(
        30,
        ge=0,
        description="A model with a positive walk-forward edge serves plans only once this many of its live calls "
        "have resolved and confirmed the edge (track_record.probation.RULE); 0: no probation (plans on the "
        "walk-forward verdict alone).",
    )
    auto_promote: bool = Field(False, description="Serve a newly stored version at once instead of in shadow first.")
    pinned_versions: dict[str, str] = Field(
        default_factory=dict, description="Model name -> version to serve whatever else is in the store (JSON)."
    )
    api_keys: list[ApiKey] = Field(
        default_factory=list,
        description="Who may call the server (JSON list of {name, sha256, scopes, rate_per_minute}); empty: anyone "
        "who can reach it (the demo on 127.0.0.1). `signals keys new` makes one.",
    )
    require_api_keys: bool = Field(
        False,
        description="Refuse to start with SIGNALS_API_KEYS empty (the Kubernetes config sets it: fail closed).",
    )
    model_signing_key: SecretStr | None = Field(
        None, description="When set, every model must carry a signature made with this key (HMAC-SHA256)."
    )
    alerts: bool = Field(True, description="Deliver alerts (webhooks, Telegram) from the server's workers.")
    alert_max_attempts: int = Field(8, ge=1, description="Delivery attempts before a message is dead.")
    alert_lease_s: float = Field(60.0, gt=0, description="How long a sender holds a message before another may.")
    webhooks: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Webhook subscriptions kept in sync at start (JSON list of {name, url, secret, filters}); "
        "`signals alerts add` is the other way.",
    )
    webhook_allow_http: bool = Field(False, description="Allow plain-http webhook URLs (default: https only).")
    webhook_allow_private: bool = Field(
        False,
        description="Allow webhooks to loopback, link-local and private addresses (a receiver on this host or "
        "inside your network; default: public addresses only).",
    )
    telegram_token: SecretStr | None = Field(None, description="A Telegram bot token: starts the bot.")
    telegram_api_url: str = Field("https://api.telegram.org", description="The Bot API server.")
    telegram_symbol: str = Field("BTC/USDT", description="The symbol /status answers for.")
    telegram_server_url: str = Field("http://127.0.0.1:3000", description="The server `signals bot` asks.")
    telegram_server_key: SecretStr | None = Field(None, description="The API key `signals bot` sends, if any.")
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins whose pages may call the server (JSON list, e.g. ["https://desk.example"]; ["*"]: any).',
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="Server log lines: BentoML's text, or one JSON object per line (time, level, logger, message, "
        "request_id).",
    )
    access_log: bool = Field(
        False,
        description="BentoML's access log line per request in the API service and the runners (method, path, "
        "status, latency, trace id); off by default: it was a sixth of a cached request's CPU.",
    )
    edge_outermost: bool = Field(
        True,
        description="The edge (host, keys, body, budget, fast lane) outside BentoML's own middleware: a refusal or a "
        "cached /predict skips BentoML's metrics, spans and access log; false (or SIGNALS_ACCESS_LOG=true): inside "
        "them, as BentoML places it.",
    )
    max_body_bytes: int = Field(262_144, ge=1024, description="Largest request body accepted (413 above it).")
    allowed_hosts: list[str] = Field(
        default_factory=lambda: list(LOOPBACK_HOSTS),
        description='Host names (any port) the server answers to (400 otherwise: DNS rebinding); ".example.com": '
        'that domain and its subdomains; ["*"]: any. The probes and /metrics answer any host.',
    )
    allowed_origins: list[str] | None = Field(
        None,
        description="Origins whose pages may send requests and open the WebSocket besides the server's own (403 "
        "otherwise); unset: the CORS origins.",
    )
    request_budget_s: float = Field(
        8.0,
        ge=0.1,
        lt=TRAFFIC_TIMEOUT_S,
        description="A request that has not started answering by then gets 503 + Retry-After (408 while its body "
        "is still arriving), before BentoML's 10 s timeout; signals still being computed then are computed on and "
        "cached.",
    )
    auth_failures_per_minute: int = Field(
        10, ge=1, description="Wrong API keys one client address may send a minute (per worker) before 429."
    )
    stream_poll_s: float = Field(
        1.0, gt=0, description="How often each worker looks for signals other workers recorded."
    )
    stream_heartbeat_s: float = Field(15.0, gt=0, description="Seconds between keep-alive comments on an idle stream.")
    spot_shorts: Literal["label", "drop"] = Field(
        "label",
        description="SHORT plans on spot pairs (spot cannot be sold short): `label` serves them marked as needing "
        "margin or a derivative (`plan_requires`); `drop` makes them not actionable, with that as the reason.",
    )
    host: str = Field("127.0.0.1", description="Where `signals serve` (and `make serve`) listens.")
    port: int = Field(3000, ge=1, le=65535, description="The port `signals serve` (`make serve PORT=...`) listens on.")
    legacy_default_symbol: str = Field(
        "BTC/USDT",
        description="The one pair an older WebSocket client gets until it subscribes (not every pair's burst).",
    )
    stream_max_subscribers: int = Field(
        1000,
        ge=1,
        description="Event-stream and WebSocket subscribers one API worker serves at once (503 + Retry-After, or "
        "WebSocket close 1013, beyond it).",
    )
    stream_max_per_key: int = Field(
        20, ge=1, description="Event-stream and WebSocket connections one API key may hold per worker (429 beyond)."
    )
    ws_max_message_bytes: int = Field(
        65_536, ge=256, description="Largest WebSocket message a client may send (close 1009 above it)."
    )
    body_timeout_s: float = Field(
        5.0,
        gt=0,
        description="A request body must arrive within this many seconds of its first read (408 after it; below "
        "the 10 s request timeout).",
    )

    @field_validator("universe")
    @classmethod
    def _current_names(cls, value: list[str]) -> list[str]:
        """Old names of renamed pairs read as the current ones (a live exchange knows only those), once each; an
        entry that is not a symbol stays as written, for `served_keys` to name and skip."""
        names: list[str] = []
        for entry in value:
            try:
                names.append(current_symbol(entry))
            except SignalsError:
                names.append(entry)
        return list(dict.fromkeys(names))

    @field_validator("legacy_default_symbol")
    @classmethod
    def _one_symbol(cls, value: str) -> str:
        return normalize_symbol(value)

    @model_validator(mode="after")
    def _keys_when_required(self) -> Settings:
        """Fail closed: a deployment that asks for keys never starts open because the Secret said `[]`."""
        if self.require_api_keys and not self.api_keys:
            raise ValueError(
                "SIGNALS_REQUIRE_API_KEYS is set but SIGNALS_API_KEYS is empty: add at least one key "
                "(`signals keys new <name> --scopes read,admin` prints the entry)"
            )
        return self


# What `signals serve` last served with, kept in the data directory: the CLI reads it under the environment and
# `.env`, so that `signals backfill` after `make serve` acts on the served exchange, not the default `binance`.
SERVE_DEFAULTS = "serve.env"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests build their own `Settings(...)` instead."""
    settings = Settings()
    served = settings.data_dir / SERVE_DEFAULTS
    if served.is_file():
        return Settings(_env_file=(served, ".env"))  # a later file wins: the user's `.env` over the served defaults
    return settings
