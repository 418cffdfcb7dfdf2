"""Log lines a platform can parse: JSON on request (`SIGNALS_LOG_FORMAT=json`), each with the request's id.

The request id is the request's W3C trace id (32 hex digits). BentoML already starts a trace for every inbound
request and its client sends `traceparent` on every call to a runner, so the same id is in the API's lines, the
runner's lines for the work done for it, the `X-Request-ID` response header and the ledger record it wrote, with
no id of our own to carry. BentoML installs its log handlers in every server process before our code is imported;
`configure_logging` only swaps their formatter (python-json-logger, a well-kept library, instead of our own
formatter), so levels, destinations and BentoML's own filters stay as BentoML set them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]
JSON_FIELDS = ("asctime", "levelname", "name", "message")


def request_id() -> str | None:
    """The current request's trace id as 32 hex digits, or None outside a request (a background loop)."""
    try:
        from opentelemetry import trace
    except ImportError:  # BentoML depends on it; a stripped environment just has no ids
        return None
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.trace_id else None


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id()
        return True


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        " ".join(f"%({field})s" for field in JSON_FIELDS),
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        reserved_attrs=[*_RESERVED, "levelname_bracketed", "component", "trace_msg", "service_name"],
    )


_RESERVED = [
    "args", "created", "exc_info", "exc_text", "filename", "funcName", "levelno", "lineno", "module", "msecs", "msg",
    "pathname", "process", "processName", "relativeCreated", "stack_info", "thread", "threadName", "taskName",
]  # fmt: skip


def configure_logging(log_format: LogFormat, handlers: Iterable[logging.Handler] | None = None) -> None:
    """Every handler of the root and `bentoml` loggers (or those given) gets the request id, and the JSON formatter
    when asked."""
    if handlers is None:
        handlers = {*logging.getLogger().handlers, *logging.getLogger("bentoml").handlers}
    handlers = set(handlers)
    if not handlers:  # outside a BentoML server (a test, a script): one stream handler like basicConfig's
        handler: logging.Handler = logging.StreamHandler()
        logging.getLogger().addHandler(handler)
        handlers = {handler}
    for handler in handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
        if log_format == "json":
            handler.setFormatter(json_formatter())
