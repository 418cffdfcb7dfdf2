"""BentoML's request log without a traceback for a caller's mistake: in every worker, the API's and the runners'
(a runner's worker imports the service graph, not the API: `signals.runners.graph`), so in a module of its own."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class ClientErrorsInOneLine(logging.Filter):
    """BentoML logs every failed request, request validation included, as an ERROR with a traceback; a caller's
    mistake (or a client that left, or whose body was cut for being slow) is one line at INFO (the answer already
    tells the caller what to fix).

    Calls whose caller left (`ClientDisconnect`) come in bursts: when a runner worker restarts, every call the API
    had already given up on fails at once. They are one counted line per `window_s`, not one line per call."""

    def __init__(self, window_s: float = 60.0, now: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_s, self.now = window_s, now
        self.abandoned = 0  # calls whose caller left since the last line that said so
        self._said_at: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is None:
            return True
        from pydantic import ValidationError
        from starlette.requests import ClientDisconnect  # the client left (or its body was cut): its business

        if isinstance(error, ClientDisconnect):
            return self._abandoned(record)
        code = getattr(error, "error_code", None)
        if isinstance(error, ValidationError) or (code is not None and int(code) < 500):
            first = " ".join(str(error).split())[:200]
            _one_info_line(record, f"{record.getMessage()}: {type(error).__name__}: {first}")
        return True

    def _abandoned(self, record: logging.LogRecord) -> bool:
        """Count the call; say so (with the count since the last time) at most once a window."""
        self.abandoned += 1
        now = self.now()
        if self._said_at is not None and now - self._said_at < self.window_s:
            return False
        line = (
            f"{record.getMessage()}: the caller left before the answer (ClientDisconnect); {self.abandoned} call(s) "
            f"abandoned since the last such line (the next {self.window_s:g} s are counted, not logged)"
        )
        _one_info_line(record, line)
        self.abandoned, self._said_at = 0, now
        return True


def _one_info_line(record: logging.LogRecord, message: str) -> None:
    record.msg, record.args = message, ()
    record.exc_info, record.exc_text = None, None
    record.levelno, record.levelname = logging.INFO, "INFO"


def quiet_client_errors() -> None:
    """Install `ClientErrorsInOneLine` on BentoML's request logger (idempotent)."""
    target = logging.getLogger("bentoml._internal.server.http_app")
    if not any(isinstance(f, ClientErrorsInOneLine) for f in target.filters):
        target.addFilter(ClientErrorsInOneLine())
