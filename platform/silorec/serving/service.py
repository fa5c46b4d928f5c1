"""``silorec serve``: an exported model behind a small HTTP API (FastAPI).

- ``GET /health``: model label, catalogue size, whether it is ready.
- ``POST /recommend`` ``{"history": ["id1", ...], "k": 10}``: the k best next items.
- ``POST /recommend/batch`` ``{"histories": [[...], ...], "k": 10}``.

Requests are validated before the model runs: an empty history, an item id the
catalogue does not have, or a k above ``max_k`` or the catalogue's size is a 422 with
a message that says which; a malformed body is FastAPI's own 422. The catalogue is
encoded once at start-up, so a request costs one history encoding and one matrix
product.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from silorec.serving.bundle import LoadedModel, RecommendError
from silorec.serving.catalogue import Catalogue

DEFAULT_MAX_K = 100
MAX_BATCH = 1024


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    history: list[str] = Field(..., description="Item ids, oldest first.")
    k: int = Field(10, ge=1)
    exclude_history: bool | None = None


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    histories: list[list[str]] = Field(..., min_length=1, max_length=MAX_BATCH)
    k: int = Field(10, ge=1)
    exclude_history: bool | None = None


def create_app(model: LoadedModel, catalogue: Catalogue, max_k: int = DEFAULT_MAX_K) -> FastAPI:
    """The HTTP app serving ``model`` over ``catalogue`` (encoded here, once)."""
    model.prepare(catalogue)
    app = FastAPI(title=f"silorec: {model.label}", version=model.config.silorec_version)

    def check_k(k: int) -> None:
        if k > max_k:
            raise HTTPException(422, f"k = {k} is above this service's limit of {max_k}")

    def items(recs: list[Any]) -> list[dict[str, Any]]:
        return [{"item_id": r.item_id, "score": r.score} for r in recs]

    # Handlers are ``async``: a request is one short CPU-bound call, run on the event
    # loop rather than hopped to a worker thread, and answered with a response built
    # here (plain ids and floats need no further encoding). Measured in
    # benchmarks/bench_serve.py.

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": model.label, "kind": model.config.kind,
                "items": len(catalogue), "catalogue": catalogue.source,
                "weights_sha256": model.config.weights_sha256}  # fmt: skip

    @app.post("/recommend")
    async def recommend(request: RecommendRequest) -> JSONResponse:
        check_k(request.k)
        try:
            recs = model.recommend(request.history, catalogue, request.k, request.exclude_history)
        except RecommendError as exc:
            raise HTTPException(422, str(exc)) from None
        return JSONResponse({"items": items(recs)})

    @app.post("/recommend/batch")
    async def recommend_batch(request: BatchRequest) -> JSONResponse:
        check_k(request.k)
        try:
            recs = model.recommend_batch(
                request.histories, catalogue, request.k, request.exclude_history
            )
        except RecommendError as exc:
            raise HTTPException(422, str(exc)) from None
        return JSONResponse({"results": [{"items": items(r)} for r in recs]})

    return app


def serve(
    model: LoadedModel, catalogue: Catalogue, host: str, port: int, max_k: int = DEFAULT_MAX_K
) -> None:
    """Run the service with uvicorn until interrupted. Torch uses one thread: one
    request's matrices are small, and the other core serves HTTP."""
    import torch
    import uvicorn

    torch.set_num_threads(1)
    uvicorn.run(create_app(model, catalogue, max_k), host=host, port=port, log_level="info")
