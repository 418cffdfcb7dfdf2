"""The `signals` console command. Each module below registers its subcommands on `app`."""

from signals.cli import data  # noqa: F401  (registers commands)
from signals.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
