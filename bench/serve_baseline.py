"""The baseline for bench/serve.py: a plain FastAPI + scikit-learn app, as commonly written.

uvicorn bench.serve_baseline:app   (BASELINE_MODEL=<skops file>); one `def` route, pandas per request.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
from fastapi import FastAPI

from keelml.model.persist import load_model

with open(os.environ["BASELINE_MODEL"], "rb") as handle:
    model = load_model(handle.read())
app = FastAPI()


@app.post("/predict")
def predict(payload: dict[str, Any]) -> dict[str, Any]:
    frame = pd.DataFrame(payload["records"])
    proba = model.predict_proba(frame)
    return {"predictions": [{"label": str(model.classes_[p.argmax()]), "probability": float(p.max())}
                            for p in proba]}
