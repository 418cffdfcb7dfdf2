"""The `signals` console command. Each module below registers its subcommands on `app`."""

from typing import NoReturn

from signals.cli import (
    alerts,  # noqa: F401  (registers commands)
    bootstrap,  # noqa: F401  (registers commands)
    controls,  # noqa: F401  (registers commands)
    data,  # noqa: F401  (registers commands)
    demo,  # noqa: F401  (registers commands)
    exchange,  # noqa: F401  (registers commands)
    keys,  # noqa: F401  (registers commands)
    ledger,  # noqa: F401  (registers commands)
    models,  # noqa: F401  (registers commands)
    serve,  # noqa: F401  (registers commands)
    train,  # noqa: F401  (registers commands)
)
from signals.cli.app import SignalsError, app, stderr


def main() -> None:
    """The command; anything a command did not report itself (a full disk mid-write, a domain error raised deep
    down) is still one line and exit code 2, never a traceback."""
    try:
        app()
    except SignalsError as error:
        _exit(str(error))
    except OSError as error:
        where = f" ({error.filename})" if getattr(error, "filename", None) else ""
        _exit(f"{error.strerror or type(error).__name__}{where}")


def _exit(message: str) -> NoReturn:
    stderr.print(f"[red]error:[/red] {' '.join(message.split())}", markup=True, highlight=False, soft_wrap=True)
    raise SystemExit(2)


__all__ = ["app", "main"]
