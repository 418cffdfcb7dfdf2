"""Readiness of the runners, asked by the service's `__is_ready__` instead of BentoML's runner probe: in BentoML
1.4.39 that probe let aiohttp's TimeoutError escape while a runner was still loading, so `/readyz` sent nothing until
the 10 s traffic timeout, then a bare 500 ("ASGI callable returned without starting response" in the log)."""

from __future__ import annotations


async def runner_ready(runner: object, timeout_s: int) -> bool:
    """A runner in its own process (BentoML's remote proxy) answers its /readyz within `timeout_s`; any failure, a
    timeout included, is "not ready". A runner in this process (no proxy) is ready."""
    probe = getattr(runner, "is_ready", None)
    if probe is None:
        return True
    try:
        return bool(await probe(timeout_s))
    except Exception:  # aiohttp's TimeoutError, a refused connection: not ready yet, never a 500
        return False
