"""JSON log lines carry the request's id: the trace id BentoML starts per request and sends on to the runners."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from signals.core.logs import RequestIdFilter, configure_logging, json_formatter, request_id


@pytest.fixture
def handler() -> Iterator[logging.StreamHandler[io.StringIO]]:
    """A handler like BentoML's on the root logger (the only one configured here); removed afterwards."""
    handler = logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def test_json_lines_have_the_fields_a_platform_parses_and_the_request_id(
    handler: logging.StreamHandler[io.StringIO],
) -> None:
    configure_logging("json", [handler])
    tracer = TracerProvider().get_tracer("test")
    log = logging.getLogger("signals.test")
    log.warning("outside a request")
    with tracer.start_as_current_span("POST /predict") as span:
        log.warning("refresh of %s", "BTC/USDT", extra={"symbol": "BTC/USDT"})
        inside = format(span.get_span_context().trace_id, "032x")
        assert request_id() == inside
    try:
        raise ValueError("bad window")
    except ValueError:
        log.exception("runner call failed")
    first, second, third = (json.loads(line) for line in handler.stream.getvalue().splitlines())
    assert first["request_id"] is None and first["level"] == "WARNING" and first["logger"] == "signals.test"
    assert second["message"] == "refresh of BTC/USDT" and second["symbol"] == "BTC/USDT"
    assert second["request_id"] == inside and len(inside) == 32
    assert "ValueError: bad window" in third["exc_info"] and {"time", "level", "message"} <= third.keys()


def test_text_stays_text_with_the_id_available_to_formats(handler: logging.StreamHandler[io.StringIO]) -> None:
    configure_logging("text", [handler])
    configure_logging("text", [handler])  # idempotent: one filter per handler
    assert sum(isinstance(f, RequestIdFilter) for f in handler.filters) == 1
    logging.getLogger("signals.test").warning("plain")
    assert handler.stream.getvalue() == "plain\n"
    assert json_formatter().format(logging.LogRecord("x", logging.INFO, "", 0, "m", None, None)).startswith("{")
