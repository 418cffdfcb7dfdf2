"""BentoML's `http` service config for cross-origin callers: in a module of its own so that the service graph
(`signals.runners.graph`) states the API service's config without importing the API."""

from __future__ import annotations

from typing import Any

from signals.core.settings import Settings


def cors_config(settings: Settings) -> dict[str, Any]:
    """BentoML's `http` service config: CORS for `SIGNALS_CORS_ORIGINS` on every route (the mounted apps too) and
    their preflight `OPTIONS`; none when the list is empty (the default: same origin only)."""
    if not settings.cors_origins:
        return {}
    return {
        "cors": {
            "enabled": True,
            "access_control_allow_origins": list(settings.cors_origins),
            "access_control_allow_methods": ["GET", "POST", "OPTIONS"],
            "access_control_allow_headers": ["Content-Type", "Authorization", "Last-Event-ID", "X-API-Key"],
            "access_control_expose_headers": ["Retry-After"],
            "access_control_max_age": 600,
        }
    }
