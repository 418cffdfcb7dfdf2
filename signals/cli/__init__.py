"""The `signals` console command. Each module below registers its subcommands on `app`."""

from signals.cli import (
    bootstrap,  # noqa: F401  (registers commands)
    data,  # noqa: F401  (registers commands)
    demo,  # noqa: F401  (registers commands)
    exchange,  # noqa: F401  (registers commands)
    ledger,  # noqa: F401  (registers commands)
    models,  # noqa: F401  (registers commands)
    train,  # noqa: F401  (registers commands)
)
from signals.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
