"""`signals.api.outermost` on the installed BentoML: the internal it wraps is still what the API worker serves, a
registered middleware wraps BentoML's whole app (first added outermost), and a BentoML that changed the internal
fails the start in one clear error."""

from __future__ import annotations

import inspect
from typing import Any

import bentoml
import pytest
from starlette.applications import Starlette

from signals.api import outermost
from signals.api.outermost import UnsupportedBentoML, add_outermost_middleware, check_bentoml, edge_outermost
from signals.core.settings import Settings


class Tagged:
    def __init__(self, app: Any, tag: str) -> None:
        self.app = app
        self.tag = tag

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


@bentoml.service(name="outermost_probe")
class Probe:
    @bentoml.api
    def hello(self) -> str:
        return "hello"


@bentoml.service(name="outermost_other")
class Other:
    @bentoml.api
    def hello(self) -> str:
        return "hello"


def test_the_installed_bentoml_serves_service_to_asgi() -> None:
    check_bentoml()


def test_registered_middleware_wraps_bentomls_whole_app_of_that_service_only() -> None:
    add_outermost_middleware(Probe, Tagged, tag="outer")
    add_outermost_middleware(Probe, Tagged, tag="inner")
    app: Any = Probe.to_asgi()
    assert (app.tag, app.app.tag) == ("outer", "inner") and isinstance(app.app.app, Starlette)
    assert Tagged not in [m.cls for m in app.app.app.user_middleware]
    assert isinstance(Other.to_asgi(), Starlette)


def test_a_bentoml_that_no_longer_serves_to_asgi_fails_in_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    source = inspect.getsource

    def changed(obj: Any) -> str:
        return source(obj).replace("service.to_asgi(", "service.build_app(")

    monkeypatch.setattr(outermost.inspect, "getsource", changed)
    with pytest.raises(UnsupportedBentoML, match=r"written for bentoml==1\.4\.39"):
        check_bentoml()


@pytest.mark.parametrize(
    ("outermost", "access_log", "outside"), [(True, False, True), (False, False, False), (True, True, False)]
)
def test_the_edge_goes_outside_unless_asked_not_to_or_the_access_log_is_on(
    outermost: bool, access_log: bool, outside: bool
) -> None:
    assert edge_outermost(Settings(edge_outermost=outermost, access_log=access_log)) is outside
