"""``mhubert serve --model URI [--lid URI] [--index URI --units-layer L] --host H --port P``: the API
under uvicorn.

Module-level imports stay light (no torch, no fastapi) so ``mhubert serve --help`` is fast; the
server is imported when it runs. By default a bad ``--model``/``--lid``/``--index`` stops the command
with a one-line error before it listens; ``--lazy`` (what the charts pass) loads in the background
and keeps the process up, not ready, with the reason on ``/v2/health/ready``.

SIGTERM (Kubernetes' pod stop): readiness turns false at once, new inference requests get 503, the
accepted ones finish, and the process exits 0 within ``--drain-timeout`` seconds (set below the pod's
``terminationGracePeriodSeconds``).
"""

from __future__ import annotations

import argparse

from api.settings import Settings

BACKENDS = ("torch", "onnx", "onnx-int8")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="serve embeddings, LID and units over HTTP (/v1 and OIP /v2)",
                              description="Serve a trained model. Unset flags fall back to MHUBERT_* "
                                          "environment variables (see api/settings.py).")
    p.add_argument("--model", dest="model_uri",
                   help="model URI: trainer .pt, transformers directory, or a serving bundle directory")
    p.add_argument("--lid", dest="lid_uri", help="LID head directory (head.pt + labels.json)")
    p.add_argument("--index", dest="index_uri",
                   help="units: faiss index file or clustering Index directory (enables /v1/units)")
    p.add_argument("--units-layer", type=int, default=None,
                   help="hidden state the index was fit on (default: from the index's record)")
    p.add_argument("--units-model", default=None,
                   help="model the index was fit on, when it is not the served model")
    p.add_argument("--units-exact", action="store_true", default=None,
                   help="exact nearest coarse centroid instead of the HNSW top-1")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="forward pass: torch (default), onnx or onnx-int8 (ONNX Runtime, CPU)")
    p.add_argument("--host", default=None, help="bind address (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="port (default 8080)")
    p.add_argument("--name", dest="model_name", help="model id shown to clients (default mhubert)")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default=None)
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None)
    p.add_argument("--max-batch-size", type=int, default=None)
    p.add_argument("--max-wait-ms", type=float, default=None)
    p.add_argument("--threads", dest="num_threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--drain-timeout", dest="drain_timeout_s", type=float, default=None,
                   help="seconds accepted requests get after SIGTERM (default 25)")
    p.add_argument("--body-timeout", dest="body_timeout_s", type=float, default=None,
                   help="a request body not complete after this many seconds gets 408 (default 30)")
    p.add_argument("--lazy", action="store_true", default=None,
                   help="load in the background and stay up (not ready) when loading fails")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=run)


FIELDS = ("model_uri", "lid_uri", "index_uri", "units_layer", "units_model", "units_exact", "backend", "host",
          "port", "model_name", "device", "dtype", "max_batch_size", "max_wait_ms", "num_threads",
          "drain_timeout_s", "body_timeout_s", "lazy")


def run(args: argparse.Namespace) -> int:
    from api.server import serve

    settings = Settings.from_env(**{f: getattr(args, f) for f in FIELDS})
    return serve(settings, log_level=args.log_level)
