"""Per-request baseline on FastAPI + uvicorn: a sync `def` endpoint (FastAPI runs it in its thread pool).

Run: `uvicorn bench.baselines.per_request_fastapi:app --workers 2` (each worker loads the models once).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict

from bench.baselines.per_request import PerRequestPredictor, UnknownModel

app = FastAPI(title="baseline: per-request FastAPI")
_predictor = PerRequestPredictor()


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: str
    timeframe: str


@app.get("/readyz")
def readyz() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/predict")
def predict(request: PredictRequest) -> dict[str, Any]:
    try:
        return _predictor.predict(request.symbol, request.timeframe)
    except UnknownModel as error:
        raise HTTPException(status_code=404, detail=str(error)) from error
