"""Pydantic models of the REST API's JSON bodies (they also make the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable error code, e.g. invalid_audio, payload_too_large")
    message: str = Field(description="what was wrong, in words")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class OipErrorResponse(BaseModel):
    """The Open Inference Protocol's error body."""

    error: str = Field(description="what was wrong, in words")


class EmbeddingResponse(BaseModel):
    model: str
    layers: list[int] = Field(description="absolute layer indices (0 = CNN/projection output)")
    pooling: Literal["mean", "none"]
    normalized: bool
    dim: int
    duration_s: float = Field(description="seconds of 16 kHz mono audio after decoding")
    frame_rate: float = Field(description="frames per second of the encoder (its conv stride)")
    num_frames: int = Field(description="valid frames of this audio")
    embeddings: list[list[float]] | list[list[list[float]]] = Field(
        description="per requested layer: a (dim,) vector for mean pooling, (num_frames, dim) for none")


class LanguageScore(BaseModel):
    language: str
    probability: float


class LidResponse(BaseModel):
    model: str
    duration_s: float
    languages: list[LanguageScore] = Field(description="top-k languages, most probable first")


class UnitsResponse(BaseModel):
    model: str
    layer: int = Field(description="the hidden state the index labels")
    num_units: int = Field(description="clusters of the index")
    frame_rate: float
    duration_s: float
    dedup: bool
    units: list[int] = Field(description="unit ids, one per frame (or per run with dedup)")
    durations: list[int] | None = Field(None, description="with dedup: frames of each run")


class ModelInfo(BaseModel):
    name: str
    version: str
    ready: bool
    state: Literal["loading", "ready", "failed"]
    parameters: int | None = None
    layers: int | None = Field(None, description="transformer layers; hidden states are 0..layers")
    dim: int | None = None
    frame_rate: float | None = Field(None, description="frames per second (sample rate / conv stride)")
    sample_rate: int = Field(description="the rate every input is resampled to")
    lid_languages: list[str] = Field(default_factory=list)
    source: str = Field(description="the model URI being served")
    lid_source: str = ""
    backend: str = "torch"
    units_source: str = Field("", description="the units index being served ('' when none)")
    units_layer: int | None = None
    num_units: int | None = None


class ModelList(BaseModel):
    models: list[ModelInfo]


class Health(BaseModel):
    status: Literal["alive", "ready", "not ready"]
    detail: str = ""


class ModelReady(BaseModel):
    name: str
    ready: bool
