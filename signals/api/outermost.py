"""ASGI middleware outside BentoML's own stack: the app a service's API worker hands uvicorn, wrapped.

Why: BentoML 1.4.39 puts a service's `add_asgi_middleware` middlewares INSIDE its own (`ServiceAppFactory.middlewares`:
HTTP metrics, an OpenTelemetry span per request and per send, the access log, its timeout and concurrency limits),
so a cached `/predict` that our edge answers from its bytes still paid for all of them: most of a warm request's CPU
(BENCHMARKS.md, "BentoML's stack around a warm /predict"). BentoML has no option for a middleware outside its own;
its API worker (`_bentoml_impl.worker.service.main`) serves exactly what `Service.to_asgi()` returns, so this wraps
that method, for the services registered here only (the runners' apps are untouched).

It patches a BentoML internal, so it checks at import what it relies on (`check_bentoml`): a BentoML that no longer
serves `Service.to_asgi()` fails the start in one clear line, and `tests/unit/api/test_outermost.py` fails with it.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from _bentoml_sdk import Service

from signals.api.middleware import ASGIApp
from signals.core.settings import Settings

TESTED_WITH = "1.4.39"
_MARK = "__signals_outermost__"
_OUTER: list[tuple[Service[Any], list[tuple[type[Any], dict[str, Any]]]]] = []  # a Service is not hashable


class UnsupportedBentoML(RuntimeError):
    """The BentoML installed does not serve `Service.to_asgi()` the way this module was written for."""


def check_bentoml() -> None:
    """Raise `UnsupportedBentoML` unless the worker still serves `service.to_asgi(is_main=...)` as its app."""
    import bentoml
    from _bentoml_impl.worker import service as worker

    params = list(inspect.signature(Service.to_asgi).parameters)
    serves_it = (
        "uvicorn.Config(" in (source := inspect.getsource(worker))
        and "app=asgi_app" in source
        and "asgi_app = service.to_asgi(" in source
    )
    if params != ["self", "is_main"] or not serves_it:
        raise UnsupportedBentoML(
            f"signals: BentoML {bentoml.__version__} no longer serves `Service.to_asgi()` as its API worker's app; "
            f"signals.api.outermost was written for bentoml=={TESTED_WITH}: install that version, or port the module"
        )


def edge_outermost(settings: Settings) -> bool:
    """Whether the edge goes outside BentoML's middleware: `SIGNALS_EDGE_OUTERMOST`, unless BentoML's access log is
    on (`SIGNALS_ACCESS_LOG`): whoever asks for its line per request gets one for every request."""
    return settings.edge_outermost and not settings.access_log


def add_outermost_middleware(service: Service[Any], middleware: type[Any], **options: Any) -> None:
    """Like `service.add_asgi_middleware`, but outside all of BentoML's middleware; the first added is the
    outermost, as there."""
    _install()
    for known, stack in _OUTER:
        if known is service:
            stack.append((middleware, options))
            return
    _OUTER.append((service, [(middleware, options)]))


def outermost(service: Service[Any], app: ASGIApp) -> ASGIApp:
    """`app` (what BentoML built for `service`) inside the middleware registered for `service`."""
    for known, stack in _OUTER:
        if known is service:
            for middleware, options in reversed(stack):
                app = middleware(app, **options)
    return app


def _install() -> None:
    if getattr(Service.to_asgi, _MARK, False):
        return
    check_bentoml()
    built = Service.to_asgi

    @functools.wraps(built)
    def to_asgi(self: Service[Any], is_main: bool = True) -> Any:
        return outermost(self, built(self, is_main=is_main))

    setattr(to_asgi, _MARK, True)
    Service.to_asgi = to_asgi
