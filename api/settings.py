"""Service settings: one dataclass, filled from ``MHUBERT_*`` environment variables or the CLI.

Every field maps onto an environment variable named ``MHUBERT_<FIELD>`` in upper case (so the Helm
chart's ConfigMap is a plain list of env vars). API keys come either from ``MHUBERT_API_KEYS``
(comma-separated) or from a file (``MHUBERT_API_KEYS_FILE``, one key per line: a mounted Secret).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from mhubert.errors import BadInput

ENV_PREFIX = "MHUBERT_"


@dataclass
class Settings:
    """What the server loads and how it batches and limits requests."""

    model_uri: str = ""                 # ours (.pt / transformers dir) on any fsspec URL
    lid_uri: str = ""                   # directory with head.pt + labels.json; empty: no LID
    index_uri: str = ""                 # units: faiss index file or Index directory; empty: no units
    units_layer: int = -1               # layer the index's features come from; -1: from its record
    units_model: str = ""               # model the index was fit on; empty: the served model
    units_exact: bool = False           # exact nearest coarse centroid instead of the HNSW top-1
    backend: str = "torch"              # torch | onnx | onnx-int8
    model_name: str = "mhubert"         # the id clients see; never taken from a request
    model_version: str = "1"
    host: str = "0.0.0.0"
    port: int = 8080
    device: str = "cpu"                 # cpu | cuda | auto
    dtype: str = "float32"              # float32 | bfloat16 (autocast) | float16 (autocast, GPU)
    num_threads: int = 0                # torch intra-op threads; 0 keeps torch's default
    normalize_audio: bool = True        # fairseq normalize=True (mHuBERT-147 was trained so)
    # micro-batching
    max_batch_size: int = 8
    max_wait_ms: float = 5.0
    max_batch_audio_s: float = 160.0    # padded batch size x longest item, in seconds
    max_queue: int = 64                 # waiting requests before 429
    # limits
    max_body_bytes: int = 10 * 1024 * 1024
    max_audio_s: float = 60.0
    min_audio_s: float = 0.05
    lid_top_k: int = 5
    # auth
    api_keys: list[str] = field(default_factory=list)
    admin_key: str = ""
    # lifecycle: load in the foreground (tests, CLI checks) or in the background (liveness stays up)
    eager_load: bool = False
    lazy: bool = False                  # `mhubert serve`: keep serving (not ready) when the load fails
    # shutdown and slow clients
    drain_timeout_s: float = 25.0       # SIGTERM: time for accepted requests (< terminationGracePeriod)
    body_timeout_s: float = 30.0        # a request body not complete by then gets 408
    max_form_parts: int = 16            # multipart: more parts -> 413

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise BadInput naming the first setting out of range."""
        if self.device not in ("cpu", "cuda", "auto"):
            raise BadInput(f"device must be cpu, cuda or auto, got {self.device!r}")
        if self.backend not in ("torch", "onnx", "onnx-int8"):
            raise BadInput(f"backend must be torch, onnx or onnx-int8, got {self.backend!r}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise BadInput(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")
        positive = ("max_batch_size", "max_queue", "max_body_bytes", "max_audio_s", "max_batch_audio_s",
                    "lid_top_k", "port", "drain_timeout_s", "body_timeout_s", "max_form_parts")
        for name in positive:
            if getattr(self, name) <= 0:
                raise BadInput(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.max_wait_ms < 0 or self.min_audio_s < 0 or self.num_threads < 0:
            raise BadInput("max_wait_ms, min_audio_s and num_threads must not be negative")
        if self.units_layer < -1:
            raise BadInput(f"units_layer must be >= 0 (or -1: from the index's record), got "
                           f"{self.units_layer}")
        if self.min_audio_s >= self.max_audio_s:
            raise BadInput("min_audio_s must be below max_audio_s")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from ``MHUBERT_<FIELD>`` variables; keyword ``overrides`` win (CLI flags)."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None or f.name == "api_keys":
                continue
            values[f.name] = _parse(f.name, raw, type(getattr(cls(), f.name)))
        keys = [k.strip() for k in env.get(ENV_PREFIX + "API_KEYS", "").split(",") if k.strip()]
        key_file = env.get(ENV_PREFIX + "API_KEYS_FILE")
        if key_file:
            try:
                with open(key_file, encoding="utf-8") as fh:
                    keys += [line.strip() for line in fh if line.strip() and not line.startswith("#")]
            except OSError as e:
                raise BadInput(f"MHUBERT_API_KEYS_FILE {key_file!r} cannot be read: {e}") from e
        values["api_keys"] = keys
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def _parse(name: str, raw: str, typ: type) -> object:
    if typ is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise BadInput(f"{ENV_PREFIX}{name.upper()} must be true/false, got {raw!r}")
    if typ in (int, float):
        try:
            return typ(raw)
        except ValueError as e:
            raise BadInput(f"{ENV_PREFIX}{name.upper()} must be a number, got {raw!r}") from e
    return raw
