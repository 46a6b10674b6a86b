"""``mhubert serve --model URI [--lid URI] --host H --port P``: run the API under uvicorn."""

from __future__ import annotations

import argparse

from api.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="serve embeddings and LID over HTTP (FastAPI + uvicorn)",
                              description="Serve a trained model. Unset flags fall back to MHUBERT_* "
                                          "environment variables (see api/settings.py).")
    p.add_argument("--model", dest="model_uri", help="model URI: trainer .pt or transformers directory")
    p.add_argument("--lid", dest="lid_uri", help="LID head directory (head.pt + labels.json)")
    p.add_argument("--host", default=None, help="bind address (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="port (default 8080)")
    p.add_argument("--name", dest="model_name", help="model id shown to clients (default mhubert)")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default=None)
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None)
    p.add_argument("--max-batch-size", type=int, default=None)
    p.add_argument("--max-wait-ms", type=float, default=None)
    p.add_argument("--threads", dest="num_threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app

    fields = ("model_uri", "lid_uri", "host", "port", "model_name", "device", "dtype", "max_batch_size",
              "max_wait_ms", "num_threads")
    settings = Settings.from_env(**{f: getattr(args, f) for f in fields})
    if not settings.model_uri:
        from mhubert.errors import BadInput

        raise BadInput("no model given: pass --model URI or set MHUBERT_MODEL_URI")
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level,
                proxy_headers=True, timeout_graceful_shutdown=10)
    return 0
