"""Create, wait for, log and delete a training job custom resource, for any :class:`Kind`.

Both launchers (TrainJob, PyTorchJob) go through this module with the kubernetes client's
``CustomObjectsApi``. The wait loop is ours rather than ``TrainerClient.wait_for_job_status``
because that one reports a failure as "TrainJob X is Failed" without the controller's reason and
message, sleeps whole seconds and serves only TrainJobs. The namespace is resolved when the code runs
(inside the pipeline pod), never when a pipeline is compiled: see :func:`current_namespace`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mhubert.errors import BadInput, MhubertError

log = logging.getLogger(__name__)

SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
NAMESPACE_ENV = ("MHUBERT_NAMESPACE", "POD_NAMESPACE")
DELETE_POLICIES = ("on-success", "always", "never")
WEEK_S = 7 * 24 * 3600


class JobFailed(MhubertError):
    """The job ended in its failed condition; the message carries the controller's reason and message."""


class JobTimeout(MhubertError):
    """The job did not finish within the timeout."""


@dataclasses.dataclass(frozen=True)
class Kind:
    """A job custom resource: where it lives in the API and how to read its progress.

    ``phase(obj)`` names the job's state (``Pending`` before any status, then the controller's words);
    ``complete`` is the phase of success; ``Failed`` is the phase of failure for both kinds.
    """

    group: str
    version: str
    plural: str
    kind: str
    complete: str
    phase: Callable[[dict[str, Any]], str]
    operator: str = "its operator"      # who serves the kind, for error messages

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


def current_namespace(sa_file: str = SA_NAMESPACE_FILE) -> str:
    """The namespace to create jobs in, resolved at run time.

    The pod's service-account namespace file, else ``$MHUBERT_NAMESPACE`` / ``$POD_NAMESPACE``,
    else ``"default"``.
    """
    try:
        with open(sa_file) as f:
            ns = f.read().strip()
        if ns:
            return ns
    except OSError:
        pass
    for var in NAMESPACE_ENV:
        if os.environ.get(var):
            return os.environ[var]
    return "default"


def custom_objects_api(api_client: Any = None) -> Any:
    """A ``CustomObjectsApi``; without a client, in-cluster config, else ~/.kube/config."""
    from kubernetes import client, config

    if api_client is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            try:
                # the client reads $KUBECONFIG once at import; honour it as it is now
                config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
            except (config.ConfigException, FileNotFoundError) as e:
                raise MhubertError(f"no Kubernetes configuration found (in-cluster or kubeconfig): {e}") \
                    from e
    return client.CustomObjectsApi(api_client)


def api_error(e: Exception, what: str, kind: Kind | None = None) -> MhubertError:
    """One line naming the call, the API server's answer (its Status message when it has one) and,
    for the usual causes, what to check."""
    import json

    status = getattr(e, "status", None)
    reason = getattr(e, "reason", None) or ""
    body = getattr(e, "body", None) or ""
    try:
        body = json.loads(body).get("message", body)
    except (ValueError, TypeError, AttributeError):
        pass
    hint = ""
    if status in (401, 403):
        hint = (" (the credentials or the service account's Role do not allow it; charts/mhubert-platform's "
                "Role covers trainjobs and pytorchjobs in its namespace)")
    elif status == 404 and kind is not None and what.startswith("creating"):
        hint = (f" (is {kind.operator} installed, serving {kind.api_version} {kind.plural}, and does the "
                "namespace exist?)")
    return MhubertError(" ".join(f"{what}: HTTP {status} {reason} {body}".split()) + hint)


@contextlib.contextmanager
def api_errors(what: str, kind: Kind, api: Any) -> Iterator[None]:
    """Turn the kubernetes client's errors inside the block into one-line MhubertErrors."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as e:
        raise api_error(e, what, kind) from e
    except HTTPError as e:
        host = getattr(getattr(getattr(api, "api_client", None), "configuration", None), "host", "?")
        raise MhubertError(f"{what}: cannot reach the Kubernetes API server at {host} "
                           f"({type(e).__name__}; check the kubeconfig or the pod's network)") from e


def latest_condition(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The newest condition whose status is "True" (controllers append in order)."""
    conds = [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    return conds[-1] if conds else None


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    """The condition of type ``ctype`` when its status is "True"."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype and c.get("status") == "True":
            return c
    return None


def submit(kind: Kind, manifest: dict[str, Any], namespace: str | None = None, api: Any = None,
           exist_ok: bool = True) -> dict[str, Any]:
    """Create the job; returns the created object. An existing job of the same name is returned as
    is when ``exist_ok`` (a retried pipeline task then waits on the same job)."""
    from kubernetes.client.exceptions import ApiException

    api = api or custom_objects_api()
    ns = namespace or manifest.get("metadata", {}).get("namespace") or current_namespace()
    name = manifest["metadata"]["name"]
    body = {**manifest, "metadata": {**manifest["metadata"], "namespace": ns}}
    with api_errors(f"creating {kind.kind} {ns}/{name}", kind, api):
        try:
            obj = api.create_namespaced_custom_object(kind.group, kind.version, ns, kind.plural, body)
        except ApiException as e:
            if e.status != 409 or not exist_ok:
                raise
            log.info("%s %s/%s already exists; waiting on it", kind.kind, ns, name)
            return get(kind, name, ns, api)
    log.info("created %s %s/%s", kind.kind, ns, name)
    return obj


def get(kind: Kind, name: str, namespace: str, api: Any = None) -> dict[str, Any]:
    api = api or custom_objects_api()
    with api_errors(f"reading {kind.kind} {namespace}/{name}", kind, api):
        return api.get_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, name)


def delete(kind: Kind, name: str, namespace: str, api: Any = None) -> None:
    """Delete the job (its pods go with it); a job already gone is fine."""
    from kubernetes.client.exceptions import ApiException

    api = api or custom_objects_api()
    with api_errors(f"deleting {kind.kind} {namespace}/{name}", kind, api):
        try:
            api.delete_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, name)
        except ApiException as e:
            if e.status != 404:
                raise
            return
    log.info("deleted %s %s/%s", kind.kind, namespace, name)


def wait(kind: Kind, name: str, namespace: str, api: Any = None, timeout_s: float = WEEK_S,
         poll_s: float = 15.0, on_status: Callable[[str, dict[str, Any]], None] | None = None,
         sleep: Callable[[float], None] | None = None,
         clock: Callable[[], float] | None = None) -> dict[str, Any]:
    """Poll until the job reaches ``kind.complete`` (returns the object) or ``Failed`` (raises
    :class:`JobFailed` with the condition's reason and message).

    ``on_status(phase, obj)`` is called on every change of phase. Raises :class:`JobTimeout` after
    ``timeout_s`` seconds, naming the last phase. ``sleep``/``clock`` default to this module's
    ``time.sleep``/``time.monotonic``, looked up at call time.
    """
    if timeout_s <= 0 or poll_s < 0:
        raise BadInput(f"the wait needs a timeout > 0 and a poll interval >= 0 seconds, got {timeout_s:g} "
                       f"and {poll_s:g}")
    sleep = sleep or time.sleep
    clock = clock or time.monotonic
    api = api or custom_objects_api()
    deadline = clock() + timeout_s
    seen: str | None = None
    while True:
        obj = get(kind, name, namespace, api)
        phase = kind.phase(obj)
        if phase != seen:
            seen = phase
            log.info("%s %s/%s: %s %s", kind.kind, namespace, name, phase,
                     (latest_condition(obj) or {}).get("message", ""))
            if on_status:
                on_status(phase, obj)
        if phase == kind.complete:
            return obj
        if phase == "Failed":
            cond = condition(obj, "Failed") or {}
            reason = cond.get("reason") or "unknown reason"
            raise JobFailed(f"{kind.kind} {namespace}/{name} failed: {reason}: "
                            f"{cond.get('message', '')}".rstrip(": "))
        if clock() >= deadline:
            raise JobTimeout(f"{kind.kind} {namespace}/{name} did not finish within {timeout_s:g} s "
                             f"(last status: {phase})")
        sleep(poll_s)


class LogFollower:
    """Copies the lines of one pod's log into ``sink`` from a background thread.

    ``fetch()`` returns the lines (a following stream that ends with the container) or nothing while
    the pod is not running yet; it is retried every ``retry_s`` until it yields or :meth:`stop`
    (after which it is read once more at most).
    Errors reading logs are logged, never raised: logs are a convenience, the job's status is the truth.
    """

    def __init__(self, fetch: Callable[[], Iterable[str] | None], sink: Callable[[str], None],
                 retry_s: float = 10.0) -> None:
        self._fetch, self._sink, self._retry_s = fetch, sink, retry_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-logs", daemon=True)

    def start(self) -> LogFollower:
        if not self._thread.ident and not self._stop.is_set():    # at most once
            self._thread.start()
        return self

    def _run(self) -> None:
        while True:     # at least one read, even when the job ended before this thread got going
            got = False
            try:
                for line in self._fetch() or ():
                    self._sink(line.rstrip("\n"))
                    got = True
            except Exception as e:  # noqa: BLE001 (see the class docstring)
                log.warning("could not read the job's logs: %s", e)
            if got or self._stop.wait(self._retry_s):
                return

    def stop(self, join_s: float = 30.0) -> None:
        """Stop retrying and give a running stream ``join_s`` seconds to drain."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(join_s)


def run(kind: Kind, manifest: dict[str, Any], namespace: str | None = None, api: Any = None,
        timeout_s: float = WEEK_S, poll_s: float = 15.0, delete_policy: str = "on-success",
        logs: Callable[[str, Any], Iterable[str] | None] | None = None,
        sink: Callable[[str], None] = print, **wait_kwargs: Any) -> dict[str, Any]:
    """Submit ``manifest``, stream node 0's log into ``sink`` once the job runs, wait, and delete the
    job by ``delete_policy``: ``on-success`` (keep a failed or timed-out job for inspection),
    ``always`` or ``never``. ``logs(namespace, api)`` is the kind's node-0 log reader."""
    if delete_policy not in DELETE_POLICIES:
        raise BadInput(f"delete policy must be one of {', '.join(DELETE_POLICIES)}, got {delete_policy!r}")
    api = api or custom_objects_api()
    ns = namespace or manifest.get("metadata", {}).get("namespace") or current_namespace()
    name = manifest["metadata"]["name"]
    submit(kind, manifest, ns, api)
    follower = LogFollower(lambda: logs(ns, api), sink) if logs else None
    user_on_status = wait_kwargs.pop("on_status", None)

    def on_status(phase: str, obj: dict[str, Any]) -> None:
        sink(f"{kind.kind} {ns}/{name}: {phase}")
        if follower and phase in ("Running", kind.complete, "Failed"):
            follower.start()
        if user_on_status:
            user_on_status(phase, obj)

    ok = False
    try:
        obj = wait(kind, name, ns, api, timeout_s=timeout_s, poll_s=poll_s, on_status=on_status,
                   **wait_kwargs)
        ok = True
        return obj
    finally:
        if follower:
            follower.stop()
        delete_by_policy(kind, name, ns, delete_policy, ok, api)


def delete_by_policy(kind: Kind, name: str, namespace: str, policy: str, succeeded: bool,
                     api: Any = None) -> None:
    """Delete the job when ``policy`` says so: ``always``, or ``on-success`` after a success."""
    if policy == "always" or (policy == "on-success" and succeeded):
        delete(kind, name, namespace, api)


def pod_log_lines(namespace: str, api: Any, labels: dict[str, str], container: str) -> Iterable[str] | None:
    """Follow the log of the running (or finished) pod carrying ``labels``; None while there is none.

    The label selector goes to the server; the labels are checked again here, so a server that
    ignores selectors cannot hand over another job's pod.
    """
    from kubernetes import client, watch

    core = client.CoreV1Api(api.api_client)
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        pod_labels = pod.metadata.labels or {}
        if any(pod_labels.get(k) != v for k, v in labels.items()):
            continue
        if (pod.status.phase if pod.status else None) in ("Running", "Succeeded", "Failed"):
            return watch.Watch().stream(core.read_namespaced_pod_log, name=pod.metadata.name,
                                        namespace=namespace, container=container, follow=True)
    return None
