"""``mhubert train render-job`` and ``mhubert job render|submit|wait``."""

from __future__ import annotations

import argparse
import sys

from mhubert.jobs import pytorchjob as pj


def _add_spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default="mhubert-train", help="PyTorchJob name (DNS-1123 label)")
    p.add_argument("--image", required=True, help="training image, e.g. REGISTRY/mhubert-gpu:TAG")
    p.add_argument("--nodes", type=int, default=1, help="number of nodes (1 Master + nodes-1 Workers)")
    p.add_argument("--gpus-per-node", type=int, default=1, help="GPUs (= processes) per node; 0 for CPU")
    p.add_argument("--cpu", default="8", help="CPU request per node")
    p.add_argument("--memory", default="64Gi", help="memory request and limit per node")
    p.add_argument("--namespace", default=None, help="namespace (default: resolved at run time)")
    p.add_argument("--s3-secret", default="mhubert-s3",
                   help="Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY ('' for none)")
    p.add_argument("--s3-endpoint", default=None, help="S3 endpoint URL passed as AWS_ENDPOINT_URL")
    p.add_argument("--max-restarts", type=int, default=3, help="elastic restarts before failing")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra env variable")
    # the trainer's own arguments (python -m mhubert.train)
    p.add_argument("--preset", default="base", help="preset name or YAML URL")
    p.add_argument("--manifest", required=True, help="corpus manifest URL")
    p.add_argument("--labels", required=True, help="labels directory URL")
    p.add_argument("--out", required=True, help="output directory URL")
    p.add_argument("--init-from", default=None, help="model to initialise from")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")


def train_args(args: argparse.Namespace) -> list[str]:
    """The ``python -m mhubert.train`` arguments from parsed CLI options."""
    out = ["--preset", args.preset, "--manifest", args.manifest, "--labels", args.labels, "--out", args.out]
    if args.init_from:
        out += ["--init-from", args.init_from]
    for s in args.set:
        out += ["--set", s]
    return out


def spec_from_args(args: argparse.Namespace) -> pj.JobSpec:
    env = {}
    for item in args.env:
        if "=" not in item:
            raise pj.BadInput(f"--env {item!r} must look like KEY=VALUE")
        k, v = item.split("=", 1)
        env[k] = v
    return pj.JobSpec(name=args.name, image=args.image, train_args=train_args(args), nodes=args.nodes,
                      gpus_per_node=args.gpus_per_node, cpu=args.cpu, memory=args.memory,
                      s3_secret=args.s3_secret or None, s3_endpoint=args.s3_endpoint,
                      max_restarts=args.max_restarts, env=env)


def _render(args: argparse.Namespace) -> int:
    sys.stdout.write(pj.to_yaml(pj.render(spec_from_args(args), args.namespace)))
    return 0


def _submit(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    ns = args.namespace or pj.current_namespace()
    pj.submit(pj.render(spec, ns), ns)
    if args.wait:
        pj.wait(spec.name, ns, timeout_s=args.timeout, poll_s=args.poll)
    return 0


def _wait(args: argparse.Namespace) -> int:
    obj = pj.wait(args.name, args.namespace or pj.current_namespace(), timeout_s=args.timeout,
                  poll_s=args.poll)
    print(f"{args.name}: Succeeded ({(obj.get('status') or {}).get('completionTime', '')})")
    return 0


def add_render_job(train_subparsers: argparse._SubParsersAction) -> None:
    """Add ``render-job`` to the ``mhubert train`` subcommands (called by mhubert/train/cli.py)."""
    p = train_subparsers.add_parser("render-job", help="print the PyTorchJob manifest of a training run")
    _add_spec_args(p)
    p.set_defaults(func=_render)


def register(subparsers: argparse._SubParsersAction) -> None:
    job = subparsers.add_parser("job", help="render, submit and wait for training PyTorchJobs")
    sub = job.add_subparsers(dest="job_command", metavar="ACTION")
    p = sub.add_parser("render", help="print the PyTorchJob manifest as YAML")
    _add_spec_args(p)
    p.set_defaults(func=_render)
    p = sub.add_parser("submit", help="create the PyTorchJob (and wait with --wait)")
    _add_spec_args(p)
    p.add_argument("--wait", action="store_true", help="wait for Succeeded/Failed")
    p.add_argument("--timeout", type=float, default=7 * 24 * 3600, help="seconds to wait")
    p.add_argument("--poll", type=float, default=15.0, help="seconds between status polls")
    p.set_defaults(func=_submit)
    p = sub.add_parser("wait", help="wait for an existing PyTorchJob")
    p.add_argument("name")
    p.add_argument("--namespace", default=None)
    p.add_argument("--timeout", type=float, default=7 * 24 * 3600)
    p.add_argument("--poll", type=float, default=15.0)
    p.set_defaults(func=_wait)
