"""Per-request baseline on Flask under gunicorn (gthread workers: sync handlers, keep-alive connections).

Run: `gunicorn -k gthread -w 2 --threads 4 bench.baselines.per_request_flask:app` (each worker loads the
models once; plain sync workers would close every connection, which would measure reconnects, not serving).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request

from bench.baselines.per_request import PerRequestPredictor, UnknownModel

app = Flask(__name__)
_predictor = PerRequestPredictor()


@app.get("/readyz")
def readyz() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/predict")
def predict() -> Any:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not {"symbol", "timeframe"} <= body.keys():
        return jsonify({"error": "body must be {symbol, timeframe}"}), 400
    try:
        return jsonify(_predictor.predict(str(body["symbol"]), str(body["timeframe"])))
    except UnknownModel as error:
        return jsonify({"error": str(error)}), 404
