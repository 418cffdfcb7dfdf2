"""`signals serve`: what `make serve` runs. It owns the serving defaults, so the server and the CLI agree.

One place decides the mode (the demo unless `SIGNALS_SOURCE` says otherwise), checks the port before any slow
setup, runs the demo bootstrap only for the demo, refuses a live or store server a ledger that holds the demo's
synthetic records (it would show them as its track record), writes what it served with to `<data_dir>/serve.env`
(the CLI's defaults from then on) and replaces itself with `bentoml serve`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from signals.cli.app import app, fail, stdout
from signals.core.errors import SignalsError
from signals.core.settings import SERVE_DEFAULTS, Settings
from signals.data.synthetic import SYNTHETIC_EXCHANGE
from signals.pipelines import DEMO_SYMBOLS

Source = Literal["store", "live", "simulated"]


class ServeError(SignalsError):
    """The serving setup is inconsistent or cannot start (one line, exit 2)."""


def serving_env(settings: Settings, source: Source | None = None) -> dict[str, str]:
    """The SIGNALS_* variables the server runs with: the demo (simulated, exchange `synthetic`, the demo pairs)
    unless the source is set; live and store modes never touch the synthetic exchange (no mixed data sources)."""
    explicit = settings.model_fields_set
    mode: Source = source or (settings.source if "source" in explicit else "simulated")
    exchange = settings.exchange
    if mode == "simulated":
        if "exchange" in explicit and exchange != SYNTHETIC_EXCHANGE:
            raise ServeError(
                f"SIGNALS_SOURCE=simulated serves the demo market (exchange {SYNTHETIC_EXCHANGE}), not {exchange}: "
                "unset SIGNALS_EXCHANGE, or use SIGNALS_SOURCE=live or store for real candles"
            )
        exchange = SYNTHETIC_EXCHANGE
    elif exchange == SYNTHETIC_EXCHANGE:
        raise ServeError(
            f"SIGNALS_SOURCE={mode} with SIGNALS_EXCHANGE={SYNTHETIC_EXCHANGE} would serve the synthetic demo as "
            "real data: name a real exchange (e.g. SIGNALS_EXCHANGE=binance), or serve the demo (SIGNALS_SOURCE unset)"
        )
    env = {"SIGNALS_SOURCE": mode, "SIGNALS_EXCHANGE": exchange}
    if mode == "simulated" and "universe" not in explicit:  # the demo serves the demo's pairs, nothing invented
        env["SIGNALS_UNIVERSE"] = json.dumps(list(DEMO_SYMBOLS))
    return env


def check_port(host: str, port: int) -> None:
    """Fail in one line, before the minutes of setup, when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ServeError(
                    f"port {port} on {host} is in use (another server?): stop it, or pick another port "
                    f"(`make serve PORT={port + 1}` or SIGNALS_PORT={port + 1})"
                ) from error
            raise ServeError(f"cannot listen on {host}:{port}: {error.strerror}") from error


def synthetic_records(url: str) -> int:
    """How many records of the ledger at `url` came from the synthetic demo market; 0 for a ledger not made yet
    (never created here) or one that cannot be read (the server's start reports that)."""
    import sqlalchemy as sa

    from signals.ledger.schema import action_records, signal_records

    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and not (parsed.database and Path(parsed.database).is_file()):
        return 0
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            tables = [t for t in (signal_records, action_records) if sa.inspect(connection).has_table(t.name)]
            return sum(
                connection.execute(
                    sa.select(sa.func.count()).select_from(t).where(t.c.data_source.like(f"%{SYNTHETIC_EXCHANGE}"))
                ).scalar_one()
                for t in tables
            )
    except sa.exc.SQLAlchemyError:
        return 0
    finally:
        engine.dispose()


def check_ledger(settings: Settings, mode: str) -> None:
    """A live or store server must not serve the demo's track record (`synthetic`, or `ccxt:synthetic` from before
    `signals serve` refused that exchange) as its own: refuse in one line, saying how to keep both."""
    import sqlalchemy as sa

    from signals.ledger.store import database_url

    url = database_url(settings)
    found = synthetic_records(url)
    if found:
        parsed = sa.engine.make_url(url)
        sqlite = parsed.get_backend_name() == "sqlite"
        where = parsed.database if sqlite else parsed.render_as_string(hide_password=True)
        raise ServeError(
            f"the ledger {where} holds {found} records of the synthetic demo, which a {mode} server would show as its "
            f"track record: serve {mode} from another data directory (e.g. SIGNALS_DATA_DIR=data-{mode}), point "
            "SIGNALS_DATABASE_URL at another database, or move that ledger aside"
        )


def write_defaults(data_dir: Path, env: dict[str, str]) -> Path:
    """`<data_dir>/serve.env`: the CLI's defaults (see `signals.core.settings.get_settings`)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SERVE_DEFAULTS
    lines = ["# written by `signals serve`: the CLI reads these defaults (the environment and .env come first)"]
    lines += [f"{name}={value}" for name, value in env.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@app.command("serve")
def serve(
    port: Annotated[int | None, typer.Option("--port", help="Default: env SIGNALS_PORT, else 3000.")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Default: env SIGNALS_HOST, else 127.0.0.1.")] = None,
    source: Annotated[
        str | None,
        typer.Option("--source", help="simulated (the demo), live or store. Default: env SIGNALS_SOURCE, else demo."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and print the settings; serve nothing.")] = False,
) -> None:
    """Serve: the demo (bootstrapped when missing) unless SIGNALS_SOURCE says live or store; `make serve` runs this."""
    settings = Settings()  # the environment and .env only: the served defaults of a previous run do not stick
    host = host or settings.host
    port = port or settings.port
    try:
        if source not in (None, "store", "live", "simulated"):
            raise ServeError(f"--source {source}: use simulated, live or store")
        env = serving_env(settings, source)  # type: ignore[arg-type]  # checked on the line above
        check_port(host, port)
        if env["SIGNALS_SOURCE"] != "simulated":
            check_ledger(settings, env["SIGNALS_SOURCE"])
    except ServeError as error:
        raise fail(error) from error
    if dry_run:
        stdout.print_json(json.dumps({"host": host, "port": port, **env}))
        return
    os.environ.update(env)
    if env["SIGNALS_SOURCE"] == "simulated":
        from signals.cli.bootstrap import bootstrap

        bootstrap(data_dir=settings.data_dir)
    defaults = write_defaults(settings.data_dir, env)
    url = f"http://{host}:{port}"
    typer.echo(
        f"Serving on {url}: dashboard at {url}/ui/, OpenAPI at {url}/docs "
        f"({env['SIGNALS_SOURCE']}, exchange {env['SIGNALS_EXCHANGE']}; the CLI's defaults are in {defaults}). Try:\n"
        f"  curl -s -X POST {url}/predict -H 'Content-Type: application/json' "
        """-d '{"symbol": "BTC/USDT", "timeframe": "1h"}'"""
    )
    sys.stdout.flush()
    bentoml = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or "bentoml"
    os.execvp(bentoml, [bentoml, "serve", "service:SignalService", "--host", host, "--port", str(port)])
