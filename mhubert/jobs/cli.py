"""``mhubert train render-job`` and ``mhubert job render|submit|wait``, for either launcher
(``trainjob``: Kubeflow Trainer v2, the default; ``pytorchjob``: the v1 Training Operator)."""

from __future__ import annotations

import argparse
import sys

from mhubert.jobs import kube, launch
from mhubert.jobs.spec import (
    DEFAULT_RUNTIME,
    RUNTIME_KINDS,
    JobSpec,
    parse_key_values,
    parse_pvc,
    parse_toleration,
)


def _add_launcher_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--launcher", choices=sorted(launch.LAUNCHERS), default=launch.DEFAULT_LAUNCHER,
                   help="trainjob (Kubeflow Trainer v2, default) or pytorchjob (v1 Training Operator)")


def _add_spec_args(p: argparse.ArgumentParser) -> None:
    _add_launcher_arg(p)
    p.add_argument("--name", default="mhubert-train", help="job name (DNS-1123 label)")
    p.add_argument("--image", required=True, help="training image, e.g. REGISTRY/mhubert-gpu:TAG")
    p.add_argument("--nodes", type=int, default=1, help="number of nodes")
    p.add_argument("--gpus-per-node", type=int, default=1, help="GPUs (= processes) per node; 0 for CPU")
    p.add_argument("--cpu", default="8", help="CPU request per node")
    p.add_argument("--memory", default="64Gi", help="memory request and limit per node")
    p.add_argument("--namespace", default=None, help="namespace (default: resolved at run time)")
    p.add_argument("--runtime", default=DEFAULT_RUNTIME,
                   help=f"TrainJob runtime (default {DEFAULT_RUNTIME}, from charts/mhubert-platform)")
    p.add_argument("--runtime-kind", choices=RUNTIME_KINDS, default=None,
                   help="TrainingRuntime (namespaced) or ClusterTrainingRuntime; default: TrainingRuntime "
                        f"for {DEFAULT_RUNTIME}, ClusterTrainingRuntime for any other runtime")
    p.add_argument("--service-account", default=None, help="service account of the training pods")
    p.add_argument("--node-selector", action="append", default=[], metavar="KEY=VALUE",
                   help="node label the training pods require (repeatable)")
    p.add_argument("--toleration", action="append", default=[], metavar="KEY[=VALUE]:EFFECT",
                   help="taint the training pods tolerate, e.g. nvidia.com/gpu:NoSchedule (repeatable)")
    p.add_argument("--pvc", action="append", default=[], metavar="CLAIM:/PATH",
                   help="mount a PersistentVolumeClaim in the training container (repeatable)")
    p.add_argument("--active-deadline", type=int, default=None, metavar="SECONDS",
                   help="the cluster fails the job after this many seconds")
    p.add_argument("--s3-secret", default="mhubert-s3",
                   help="Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY ('' for none)")
    p.add_argument("--s3-endpoint", default=None, help="S3 endpoint URL passed as AWS_ENDPOINT_URL")
    p.add_argument("--max-restarts", type=int, default=3, help="PyTorchJob: elastic restarts before failing")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra env variable")
    # the trainer's own arguments (python -m mhubert.train)
    p.add_argument("--preset", default="base", help="preset name or YAML URL")
    p.add_argument("--manifest", required=True, help="corpus manifest URL")
    p.add_argument("--labels", required=True, help="labels directory URL")
    p.add_argument("--out", required=True, help="output directory URL")
    p.add_argument("--init-from", default=None, help="model to initialise from")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")


def _add_wait_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=kube.WEEK_S, help="seconds to wait")
    p.add_argument("--poll", type=float, default=15.0, help="seconds between status polls")
    p.add_argument("--delete", dest="delete_policy", choices=kube.DELETE_POLICIES, default="on-success",
                   help="when to delete the job: on-success (default; a failed job stays for inspection), "
                        "always or never")


def train_args(args: argparse.Namespace) -> list[str]:
    """The ``python -m mhubert.train`` arguments from parsed CLI options."""
    out = ["--preset", args.preset, "--manifest", args.manifest, "--labels", args.labels, "--out", args.out]
    if args.init_from:
        out += ["--init-from", args.init_from]
    for s in args.set:
        out += ["--set", s]
    return out


def spec_from_args(args: argparse.Namespace) -> JobSpec:
    runtime_kind = args.runtime_kind or ("TrainingRuntime" if args.runtime == DEFAULT_RUNTIME
                                         else "ClusterTrainingRuntime")
    return JobSpec(name=args.name, image=args.image, train_args=train_args(args), nodes=args.nodes,
                   gpus_per_node=args.gpus_per_node, cpu=args.cpu, memory=args.memory,
                   s3_secret=args.s3_secret or None, s3_endpoint=args.s3_endpoint,
                   max_restarts=args.max_restarts, env=parse_key_values(args.env, "--env"),
                   runtime=args.runtime, runtime_kind=runtime_kind, service_account=args.service_account,
                   node_selector=parse_key_values(args.node_selector, "--node-selector"),
                   tolerations=[parse_toleration(t) for t in args.toleration],
                   pvcs=dict(parse_pvc(p) for p in args.pvc), active_deadline_seconds=args.active_deadline)


def _render(args: argparse.Namespace) -> int:
    sys.stdout.write(launch.to_yaml(launch.render(args.launcher, spec_from_args(args), args.namespace)))
    return 0


def _submit(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    ns = args.namespace or kube.current_namespace()
    if args.wait:
        launch.run_training(args.launcher, spec, ns, timeout_s=args.timeout, poll_s=args.poll,
                            delete_policy=args.delete_policy)
    else:
        kube.submit(launch.KINDS[args.launcher], launch.render(args.launcher, spec, ns), ns)
        print(f"{args.name}: submitted to namespace {ns}")
    return 0


def _wait(args: argparse.Namespace) -> int:
    kind = launch.KINDS[args.launcher]
    ns = args.namespace or kube.current_namespace()
    ok = False
    try:
        obj = kube.wait(kind, args.name, ns, timeout_s=args.timeout, poll_s=args.poll)
        ok = True
    finally:
        kube.delete_by_policy(kind, args.name, ns, args.delete_policy, ok)
    finished = (obj.get("status") or {}).get("completionTime")
    print(f"{args.name}: {kind.complete}" + (f" ({finished})" if finished else ""))
    return 0


def add_render_job(train_subparsers: argparse._SubParsersAction) -> None:
    """Add ``render-job`` to the ``mhubert train`` subcommands (called by mhubert/train/cli.py)."""
    p = train_subparsers.add_parser("render-job", help="print the TrainJob (or PyTorchJob) of a training run")
    _add_spec_args(p)
    p.set_defaults(func=_render)


def register(subparsers: argparse._SubParsersAction) -> None:
    job = subparsers.add_parser("job", help="render, submit and wait for training TrainJobs / PyTorchJobs")
    sub = job.add_subparsers(dest="job_command", metavar="ACTION")
    p = sub.add_parser("render", help="print the job manifest as YAML")
    _add_spec_args(p)
    p.set_defaults(func=_render)
    p = sub.add_parser("submit", help="create the job (and follow it to the end with --wait)")
    _add_spec_args(p)
    p.add_argument("--wait", action="store_true", help="stream node 0's log and wait for the end")
    _add_wait_args(p)
    p.set_defaults(func=_submit)
    p = sub.add_parser("wait", help="wait for an existing job")
    p.add_argument("name")
    _add_launcher_arg(p)
    p.add_argument("--namespace", default=None)
    _add_wait_args(p)
    p.set_defaults(func=_wait)
