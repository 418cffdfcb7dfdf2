"""`signals keys new`: an API key for the server, printed once, and the entry for `SIGNALS_API_KEYS`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from signals.cli.app import app, fail, split_csv, stdout
from signals.core.errors import InvalidInput

keys_app = typer.Typer(help="API keys: the server keeps only their SHA-256.")
app.add_typer(keys_app, name="keys")


@keys_app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="Who the key is for, e.g. desk or grafana.")],
    scopes: Annotated[list[str] | None, typer.Option("--scopes", help="read, admin (comma-separated).")] = None,
    rate: Annotated[int, typer.Option("--rate", min=1, help="Requests a minute per worker.")] = 600,
) -> None:
    """Make a random key; print it (once: it is not stored anywhere) and the JSON entry that grants it.

    Add the entry to the JSON list in SIGNALS_API_KEYS on every server; give the key to its user."""
    from signals.api.access import new_key
    from signals.core.settings import ApiKey

    wanted = split_csv(scopes) or ["read"]
    if not set(wanted) <= {"read", "admin"}:
        raise fail(InvalidInput(f"unknown scope(s) {sorted(set(wanted) - {'read', 'admin'})}; use read, admin"))
    key, digest = new_key()
    entry = ApiKey.model_validate({"name": name, "sha256": digest, "scopes": wanted, "rate_per_minute": rate})
    stdout.print(f"key (give it to {name}; it is shown only now): {key}", highlight=False, soft_wrap=True)
    stdout.print(
        f"entry for SIGNALS_API_KEYS: {json.dumps(entry.model_dump(mode='json'))}", highlight=False, soft_wrap=True
    )
