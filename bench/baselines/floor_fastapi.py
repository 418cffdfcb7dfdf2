"""Framework floor without a framework for models: a trivial FastAPI endpoint under uvicorn.

Run: `uvicorn bench.baselines.floor_fastapi:app --workers 1`.
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

app = FastAPI(title="floor: trivial FastAPI")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: str
    timeframe: str


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/predict")
async def predict(request: PredictRequest) -> dict[str, object]:
    """Echo with fixed probabilities: the cost of HTTP + JSON + validation in FastAPI."""
    return {
        "symbol": request.symbol,
        "timeframe": request.timeframe,
        "probabilities": {"SHORT": 0.2, "NO_TRADE": 0.5, "LONG": 0.3},
    }
