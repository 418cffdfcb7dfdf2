"""The published OpenAPI document (`/docs.json`): valid OpenAPI 3.0.3, built from the same pydantic models that
validate requests and answers, with every route's real error statuses in the one error shape.

BentoML's own document says 3.0.2 but carries JSON Schema 2020-12 constructs, drops `null` from optional fields
(so every NO_TRADE signal, whose `levels` is null, violated it) and loses `required` and `additionalProperties`
of request bodies. Here each POST route's request and answer schemas come from its models, translated to
OpenAPI 3.0 (`nullable`, `example`, `allOf` around a `$ref` with siblings); the mounted apps' GET routes come
from FastAPI's document, translated the same way. Schemathesis checks the served document in the tests.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter

REF = "#/components/schemas/{model}"
DESCRIPTION = (
    "Trading signals over HTTP: per (symbol, timeframe) CNN-LSTM classifiers (SHORT / NO_TRADE / LONG with a "
    "calibrated confidence) and a PPO policy (HOLD / BUY / SELL), each served with its walk-forward evidence; a "
    "trade plan only where the skill gate finds a demonstrated edge after costs, otherwise `actionable: false` with "
    "the reason. Errors come in one shape on every route (`ErrorBody`); 503 with Retry-After is ours. Times are "
    "ISO-8601 UTC with `Z`; only the chart routes (`/api/candles`, `/equity`) carry epoch seconds, as the chart "
    "library reads them, and the older routes under `/api` keep the formats their clients parse."
)


def package_version() -> str:
    """`info.version`: the installed package's version (a bento copies the source without installing it)."""
    try:
        return version("trading-signals")
    except PackageNotFoundError:
        return "unknown (not installed)"


TEXT = {"type": "string"}
ERROR_STATUSES: dict[int, str] = {
    400: "Malformed request: the message says what to fix (field errors in `errors`), or a Host this server does "
    "not answer to (SIGNALS_ALLOWED_HOSTS).",
    403: "A page of another origin (SIGNALS_ALLOWED_ORIGINS); an admin route called from another machine while no "
    "API keys are set; with keys, a key without the admin scope.",
    404: "No such model, symbol, record or route.",
    408: "The body did not arrive within SIGNALS_REQUEST_BUDGET_S.",
    413: "Body over SIGNALS_MAX_BODY_BYTES.",
    415: "The body is not sent as JSON (`Content-Type: application/json`).",
    422: "The candles cannot make a window (too few, NaN): found vs needed.",
    503: "Ours, for now (exchange, runner, ledger, a model file, SIGNALS_REQUEST_BUDGET_S): retry after Retry-After.",
}
ACCESS_STATUSES: dict[int, str] = {
    401: "An API key is needed.",
    429: "The key is over its rate limit, or the address sent too many wrong keys: retry after Retry-After.",
}
RETRY_HEADER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
INFRA_PATHS = {
    "/livez": "Liveness: 200 while the process runs.",
    "/readyz": "Readiness: 200 once the models are loaded.",
    "/metrics": "Prometheus metrics.",
}


class ErrorBody(BaseModel):
    """Every error answer: `error` says what is wrong and what to fix; `detail` repeats it (older clients read it)."""

    success: bool = False
    status: int
    error: str
    detail: str
    errors: list[dict[str, str]] | None = None


def published(model: Any) -> dict[str, Any]:
    """Options of a mounted app's route that publish `model` as its 200 answer and leave the answer as built (no
    validation or filtering on the way out: the older clients' shapes are `api/legacy.py`'s, and the tests hold
    each answer to its model)."""
    return {"response_model": None, "responses": {200: {"model": model, "description": "Successful Response"}}}


def to_oas30(node: Any) -> Any:
    """A JSON Schema (2020-12, as pydantic and FastAPI write it) as an OpenAPI 3.0 schema object."""
    if isinstance(node, list):
        return [to_oas30(item) for item in node]
    if not isinstance(node, dict):
        return node
    literal = ("example", "default", "enum")  # values, not schemas
    out = {key: (value if key in literal else to_oas30(value)) for key, value in node.items()}
    out = _without_null_options(out)
    _fix_keywords(out)
    return out


def _without_null_options(out: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X, {type: null}]` and `type: [X, "null"]` as X with `nullable: true`."""
    for combinator in ("anyOf", "oneOf"):
        options = out.get(combinator)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [option for option in options if option != {"type": "null"}]
            del out[combinator]
            out["nullable"] = True
            if len(rest) == 1 and "$ref" in rest[0]:
                out["allOf"] = rest
            elif len(rest) == 1:
                out = {**rest[0], **out}
            elif not rest:  # only null: a property that must be absent or null
                out["enum"] = [None]
            else:
                out[combinator] = rest
    if out.get("type") == "null":
        del out["type"]
        out["nullable"], out["enum"] = True, [None]
    if out.get("nullable") and isinstance(out.get("enum"), list) and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]  # OpenAPI 3.0.3: `nullable` does not widen an enum by itself
    kinds = out.get("type")
    if isinstance(kinds, list):
        if "null" in kinds:
            out["nullable"] = True
        others = [kind for kind in kinds if kind != "null"]
        if len(others) == 1:
            out["type"] = others[0]
        else:
            del out["type"]
            out["anyOf"] = [{"type": kind} for kind in others]
    return out


def _fix_keywords(out: dict[str, Any]) -> None:
    """The JSON Schema 2020-12 keywords OpenAPI 3.0 spells otherwise, in place."""
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if "examples" in out:
        examples = out.pop("examples")
        if isinstance(examples, list) and examples:
            out.setdefault("example", examples[0])
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = out.get(bound)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[plain], out[bound] = value, True
    if "$ref" in out and len(out) > 1:  # OpenAPI 3.0 ignores a $ref's siblings
        ref = out.pop("$ref")
        out["allOf"] = [{"$ref": ref}, *out.get("allOf", [])]
    if out.get("default", ...) is None and not out.get("nullable"):
        del out["default"]
    for key in ("$schema", "$defs", "discriminator"):
        out.pop(key, None)


def schema_of(
    annotation: Any, components: dict[str, Any], mode: Literal["validation", "serialization"] = "serialization"
) -> dict[str, Any]:
    """The schema of a model or type (as answered, or as `mode="validation"` for a request), its nested models added
    to `components`; a `$ref` for a model."""
    schema = TypeAdapter(annotation).json_schema(ref_template=REF, mode=mode)
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = to_oas30(definition)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        components[annotation.__name__] = to_oas30(schema)
        return {"$ref": REF.format(model=annotation.__name__)}
    return to_oas30(schema)


def error_responses(statuses: Mapping[int, str]) -> dict[str, Any]:
    return {
        str(status): {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}},
            **({"headers": RETRY_HEADER} if status in (429, 503) else {}),
        }
        for status, description in statuses.items()
    }


def openapi_document(
    service: Any, mounted: Mapping[str, Any], *, title: str, version: str, keys: bool, universe: int
) -> dict[str, Any]:
    """The whole document: `service`'s POST APIs, the `mounted` FastAPI apps' routes (prefix -> app); lists of
    symbols are published with this server's limit, `universe` (the engine refuses longer ones)."""
    components: dict[str, Any] = {}
    schema_of(ErrorBody, components)
    statuses = {**ERROR_STATUSES, **(ACCESS_STATUSES if keys else {})}
    paths: dict[str, Any] = {}
    for path, description in INFRA_PATHS.items():
        paths[path] = {
            "get": {
                "tags": ["health"],
                "summary": description,
                "responses": {
                    "200": {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}
                },
            }
        }
    for name, api in service.apis.items():
        paths[api.route] = {"post": _post_operation(name, api, components, statuses)}
    for prefix, app in mounted.items():
        _add_mounted(paths, components, prefix, app.openapi(), statuses)
    _limit_symbol_lists(paths, components, universe)
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version, "description": DESCRIPTION},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(components.items()))},
    }


def _post_operation(name: str, api: Any, components: dict[str, Any], statuses: Mapping[int, str]) -> dict[str, Any]:
    request_model = _plain_model(api.input_spec)
    answer = _answer_type(api)
    doc = inspect.getdoc(inspect.unwrap(api.func)) or name
    responses = {
        "200": {"description": "OK", "content": {"application/json": {"schema": schema_of(answer, components)}}}
    }
    wanted = dict(statuses)
    if api.route.startswith("/admin/"):
        wanted[409] = "The state does not allow it (e.g. nothing to roll back to)."
    responses.update(error_responses(dict(sorted(wanted.items()))))
    return {
        "operationId": name,
        "tags": ["admin" if api.route.startswith("/admin/") else "signals"],
        "summary": doc.split("\n")[0],
        "description": doc,
        "requestBody": {
            # A route whose fields all have defaults may be called without a body (BentoML reads it as {}).
            "required": any(f.is_required() for f in request_model.model_fields.values()),
            "content": {"application/json": {"schema": schema_of(request_model, components, mode="validation")}},
        },
        "responses": responses,
    }


def _plain_model(model: type[BaseModel]) -> type[BaseModel]:
    """BentoML wraps a request model as `<Name>IODescriptor`; publish our own model (same fields) under its name."""
    for base in model.__mro__[1:]:
        if isinstance(base, type) and issubclass(base, BaseModel) and base.__module__.startswith("signals."):
            return base
    return model


def _answer_type(api: Any) -> Any:
    hints = inspect.get_annotations(inspect.unwrap(api.func), eval_str=True)
    answer = hints.get("return", Any)
    return Any if answer is inspect.Signature.empty else answer


def _add_mounted(
    paths: dict[str, Any],
    components: dict[str, Any],
    prefix: str,
    document: dict[str, Any],
    statuses: Mapping[int, str],
) -> None:
    for name, definition in document.get("components", {}).get("schemas", {}).items():
        if name not in ("HTTPValidationError", "ValidationError"):
            components.setdefault(name, to_oas30(definition))
    for path, operations in document.get("paths", {}).items():
        converted = {}
        for method, operation in operations.items():
            operation = copy.deepcopy(operation)
            responses = {code: to_oas30(r) for code, r in operation.get("responses", {}).items() if code != "422"}
            responses.update(error_responses(statuses))
            operation["responses"] = responses
            operation["parameters"] = [to_oas30(p) for p in operation.get("parameters", [])]
            operation.setdefault("tags", ["compatibility" if prefix else "dashboard and push"])
            converted[method] = operation
        paths[f"{prefix}{path}"] = converted


def _limit_symbol_lists(paths: dict[str, Any], components: dict[str, Any], universe: int) -> None:
    from signals.core.symbols import symbols_csv_pattern

    symbols = components.get("BatchRequest", {}).get("properties", {}).get("symbols")
    if symbols is not None:
        symbols["maxItems"] = universe
    for parameter in paths.get("/api/predictions", {}).get("get", {}).get("parameters", []):
        if parameter.get("name") == "symbols":
            parameter.setdefault("schema", {})["pattern"] = symbols_csv_pattern(universe)
