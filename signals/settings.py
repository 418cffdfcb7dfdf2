"""One typed settings object; every knob is an environment variable prefixed ``SIGNALS_``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The 34 USDT pairs of ../shared/data: the default universe for demo data and training.
DEFAULT_UNIVERSE: tuple[str, ...] = tuple(
    f"{base}/USDT"
    for base in (
        "AAVE APT ARB ATOM AVAX BCH BTC DOGE ETC ETH FET FTM HBAR ICP INJ LDO LINK LTC "
        "MATIC MKR NEAR OP PEPE RUNE SEI SHIB SOL STX SUI TIA TRX UNI WLD XRP"
    ).split()
)


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
    universe: list[str] = Field(default_factory=lambda: list(DEFAULT_UNIVERSE))
    timeframes: list[str] = Field(default_factory=lambda: ["15m", "1h", "4h", "1d"])
    device: Literal["auto", "cpu", "cuda"] = "auto"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests build their own `Settings(...)` instead."""
    return Settings()
