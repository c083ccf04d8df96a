"""Run one Pod as a local process, the way the kubelet runs a container.

Called by nodeagent.py: one `PodRunner` thread per pod UID bound to the node.

Life of a runner (a small state machine, driven by `run()`'s loop):
  starting   -> obtain the pod's ServiceAccount token (TokenRequest, bound to
                the pod) and write its kubeconfig; compute argv and env.
  running    -> process alive; readiness/liveness probes polled on schedule;
                status (Ready, containerStatuses) patched when it changes.
  backoff    -> process exited and restartPolicy says restart: wait 1, 2, 4,
                ... up to `backoff_max` seconds (CrashLoopBackOff), restart
                with restartCount + 1.
  finished   -> exited for good (restartPolicy Never/OnFailure): phase
                Succeeded or Failed.
  terminating-> the pod has a deletionTimestamp: SIGTERM, SIGKILL when the
                grace period ends, then delete the pod object with grace 0.
  gone       -> the object vanished from the API: SIGKILL at once.
The process is the leader of its own process group; when it dies, whatever it
left behind in the group is killed too, as a container's teardown would.
"""

from __future__ import annotations

import base64
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import procs
from .kubeapi import ApiError, KubeClient
from .kubeconfig import write_kubeconfig
from .podspec import PodSpecError, plan_container
from .probes import ProbeState, run_probe

__all__ = ["PodRunner", "RunnerConfig"]

JSON = dict[str, Any]
HOST_IP = "127.0.0.1"
TOKEN_SECONDS = 24 * 3600  # outlives any test session; no refresh needed
TICK = 0.2  # seconds between checks of process, probes and deletion

log = logging.getLogger("camstream.nodeagent")


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RunnerConfig:
    """What every runner of one node agent shares."""

    client: KubeClient
    server: str
    ca_cert: Path
    node_name: str
    log_dir: Path  # <log_dir>/<namespace>_<name>.log per pod
    work_dir: Path  # <work_dir>/<namespace>_<name>_<uid8>/ per pod: cwd, kubeconfig
    base_env: Mapping[str, str]
    reaper: procs.GroupReaper
    backoff_base: float = 1.0
    backoff_max: float = 10.0
    # Per pod (namespace, name): the API server address its kubeconfig names
    # (a cuttable link, apilink.py) and extra environment (e.g. a skewed clock).
    server_for: Callable[[str, str], str] | None = None
    env_for: Callable[[str, str], Mapping[str, str]] | None = None


class PodRunner(threading.Thread):
    """Runs one pod's first container; see the module docstring."""

    def __init__(
        self, config: RunnerConfig, pod: JSON, pod_ip: str, on_exit: Callable[[PodRunner], None]
    ) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.config = config
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.pod_ip = pod_ip
        self.log_path = config.log_dir / f"{self.namespace}_{self.pod_name}.log"
        self._dir = config.work_dir / f"{self.namespace}_{self.pod_name}_{self.uid[:8]}"
        self._pod = pod
        self._on_exit = on_exit
        self._wake = threading.Event()
        self._gone = False
        self._stopping = False  # agent shutdown: stop the process, keep the object
        self._lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.restart_count = 0
        self._attempts = 0  # process starts tried, failed ones included
        self._crashes = 0  # consecutive short runs, for the backoff
        self._restart_at = 0.0
        self._run_started = 0.0
        self._started_iso = ""
        self._start_time = _now_iso()
        self._finished = False
        self._waiting: tuple[str, str] | None = ("ContainerCreating", "")
        self._last_terminated: JSON | None = None  # previous run, while restarting
        self._terminal: JSON | None = None  # the final run, once finished
        self._ready_probe: ProbeState | None = None
        self._live_probe: ProbeState | None = None
        self._conditions: dict[str, tuple[str, str]] = {}  # type -> (status, since)
        self._pushed: JSON | None = None
        self._env: dict[str, str] = {}
        self._kubeconfig: Path | None = None

    # -- called from other threads -----------------------------------------

    def update(self, pod: JSON) -> None:
        with self._lock:
            self._pod = pod
        self._wake.set()

    def gone(self) -> None:
        self._gone = True
        self._wake.set()

    def shutdown(self) -> None:
        self._stopping = True
        self._wake.set()

    @property
    def pid(self) -> int | None:
        proc = self.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    # -- the loop ------------------------------------------------------------

    def run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("%s/%s: runner failed", self.namespace, self.pod_name)
            self._kill_now()
        finally:
            self._on_exit(self)

    def _loop(self) -> None:
        container = self._pod["spec"]["containers"][0]
        if self._pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            self._finished = True  # a finished pod from before we started: run nothing
        while True:
            with self._lock:
                pod = self._pod
            if self._gone or self._stopping:
                self._stop_process(grace=5.0 if self._stopping else 0.0)
                return
            if pod["metadata"].get("deletionTimestamp"):
                self._terminate(pod)
                return
            now = time.monotonic()
            if self.proc is None and not self._finished and now >= self._restart_at:
                self._start(pod)
            elif self.proc is not None and self.proc.poll() is not None:
                self._exited(pod)
            elif self.proc is not None:
                self._probe(container, now)
            self._push_status(pod)
            self._wake.wait(TICK)
            self._wake.clear()

    # -- process lifecycle ----------------------------------------------------

    def _start(self, pod: JSON) -> None:
        try:
            if self._kubeconfig is None and pod["spec"].get("automountServiceAccountToken", True):
                self._kubeconfig = self._write_pod_kubeconfig(pod)
            base = dict(self.config.base_env)
            base.update(
                POD_NAME=self.pod_name,
                POD_NAMESPACE=self.namespace,
                POD_IP=self.pod_ip,
                NODE_NAME=self.config.node_name,
                HOSTNAME=self.pod_name,
            )
            if self._kubeconfig is not None:
                base["KUBECONFIG"] = str(self._kubeconfig)
            if self.config.env_for is not None:
                base.update(self.config.env_for(self.namespace, self.pod_name))
            plan = plan_container(
                pod, pod_ip=self.pod_ip, host_ip=HOST_IP, base_env=base, lookup=self._lookup
            )
        except (PodSpecError, ApiError, OSError) as exc:
            self._waiting = ("CreateContainerConfigError", str(exc))
            self._restart_at = time.monotonic() + 2.0
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        cwd = Path(plan.working_dir) if plan.working_dir else self._dir
        if not cwd.is_dir():
            cwd = self._dir
        # Counted when the next run starts, as the kubelet counts new containers.
        if self._attempts > 0:
            self.restart_count += 1
        self._attempts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as handle:
            handle.write(f"=== {_now_iso()} start #{self.restart_count} uid={self.uid}\n")
        try:
            self.proc = procs.spawn(plan.argv, self.log_path, env=plan.env, cwd=cwd)
        except OSError as exc:
            # Like a runtime's StartError: counts as a failed run.
            self._last_terminated = self._terminated_state(128, "StartError", str(exc))
            self._schedule_restart(pod, exit_code=128)
            return
        self.config.reaper.add(self.proc.pid)  # the process leads its own group
        self._env = plan.env
        self._run_started = time.monotonic()
        self._started_iso = _now_iso()
        self._waiting = None
        container = pod["spec"]["containers"][0]
        if "readinessProbe" in container:
            self._ready_probe = ProbeState(container["readinessProbe"], self._run_started, False)
        if "livenessProbe" in container:
            self._live_probe = ProbeState(container["livenessProbe"], self._run_started, True)
        log.info("%s/%s: started pid %d", self.namespace, self.pod_name, self.proc.pid)

    def _exited(self, pod: JSON) -> None:
        assert self.proc is not None
        code = self.proc.returncode
        exit_code = code if code >= 0 else 128 - code  # killed by signal N -> 128+N
        self._kill_group(self.proc.pid)
        log.info("%s/%s: pid %d exited %d", self.namespace, self.pod_name, self.proc.pid, exit_code)
        self._last_terminated = self._terminated_state(
            exit_code, "Completed" if exit_code == 0 else "Error", ""
        )
        self.proc = None
        self._ready_probe = self._live_probe = None
        self._schedule_restart(pod, exit_code)

    def _schedule_restart(self, pod: JSON, exit_code: int) -> None:
        policy = pod["spec"].get("restartPolicy", "Always")
        if policy == "Never" or (policy == "OnFailure" and exit_code == 0):
            self._finished = True
            self._waiting = None
            return
        # A run that lasted a while resets the backoff, as the kubelet's does.
        ran = time.monotonic() - self._run_started if self._run_started else 0.0
        self._crashes = 1 if ran > 60 else self._crashes + 1
        delay = min(self.config.backoff_max, self.config.backoff_base * 2 ** (self._crashes - 1))
        self._restart_at = time.monotonic() + delay
        self._waiting = ("CrashLoopBackOff", f"back-off {delay:.0f}s restarting failed container")

    def _probe(self, container: JSON, now: float) -> None:
        for state in (self._ready_probe, self._live_probe):
            if state is not None and state.due(now):
                ok = run_probe(state.probe, container, self.pod_ip, self._env)
                state.record(ok, time.monotonic())
        if self._live_probe is not None and not self._live_probe.result:
            log.info("%s/%s: liveness probe failed, restarting", self.namespace, self.pod_name)
            grace = float(self._pod["spec"].get("terminationGracePeriodSeconds", 30))
            self._stop_process(grace)
            # _exited() will account the run on the next tick; keep the proc object.

    def _terminate(self, pod: JSON) -> None:
        grace = pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        log.info("%s/%s: terminating, grace %ss", self.namespace, self.pod_name, grace)
        self._stop_process(float(grace))
        if self.proc is not None:
            self._exited_for_good()
        self._set_condition("Ready", "False")
        self._set_condition("ContainersReady", "False")
        self._push_status(pod, phase_override=None)
        try:
            self.config.client.delete(
                f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}",
                {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
            )
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise
        log.info("%s/%s: deleted", self.namespace, self.pod_name)

    def _exited_for_good(self) -> None:
        assert self.proc is not None
        code = self.proc.returncode
        exit_code = code if code >= 0 else 128 - code
        self._last_terminated = None
        reason = "Completed" if code == 0 else "Error"
        self._terminal = self._terminated_state(exit_code, reason, "")
        self._finished = True
        self.proc = None

    def _stop_process(self, grace: float) -> None:
        """SIGTERM the main process, SIGKILL its group when `grace` runs out.

        Returns early if the pod object disappears meanwhile (force delete)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            if proc is not None:
                self._kill_group(proc.pid)
            return
        if grace > 0:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + grace
            while proc.poll() is None and time.monotonic() < deadline and not self._gone:
                time.sleep(0.05)
        self._kill_group(proc.pid)
        proc.wait()

    def _kill_now(self) -> None:
        if self.proc is not None:
            self._kill_group(self.proc.pid)
            self.proc.wait()

    def _kill_group(self, pgid: int) -> None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.config.reaper.discard(pgid)

    # -- API helpers ---------------------------------------------------------

    def _write_pod_kubeconfig(self, pod: JSON) -> Path:
        account = pod["spec"].get("serviceAccountName") or "default"
        answer = self.config.client.create(
            f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {
                    "expirationSeconds": TOKEN_SECONDS,
                    # Bound to the pod: the token dies with it, as in a real cluster.
                    "boundObjectRef": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "name": self.pod_name,
                        "uid": self.uid,
                    },
                },
            },
        )
        self._dir.mkdir(parents=True, exist_ok=True)
        server = self.config.server
        if self.config.server_for is not None:
            server = self.config.server_for(self.namespace, self.pod_name)
        return write_kubeconfig(
            self._dir / "kubeconfig",
            server,
            self.config.ca_cert,
            user=f"system:serviceaccount:{self.namespace}:{account}",
            token=answer["status"]["token"],
            namespace=self.namespace,
        )

    def _lookup(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        plural = "secrets" if kind == "secret" else "configmaps"
        try:
            obj = self.config.client.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        data: dict[str, str] = obj.get("data") or {}
        if kind == "secret":
            return {k: base64.b64decode(v).decode() for k, v in data.items()}
        return dict(data)

    # -- status ----------------------------------------------------------------

    def _terminated_state(self, exit_code: int, reason: str, message: str) -> JSON:
        state: JSON = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": self._started_iso or None,
            "finishedAt": _now_iso(),
        }
        if message:
            state["message"] = message[:200]
        return state

    def _set_condition(self, kind: str, status: str) -> None:
        if self._conditions.get(kind, ("", ""))[0] != status:
            self._conditions[kind] = (status, _now_iso())

    def _push_status(self, pod: JSON, phase_override: str | None = None) -> None:
        container = pod["spec"]["containers"][0]
        running = self.proc is not None and self.proc.poll() is None
        if running:
            ready = self._ready_probe.result if self._ready_probe is not None else True
        else:
            ready = False
        terminal = self._terminal
        if running:
            state: JSON = {"running": {"startedAt": self._started_iso}}
        elif self._finished and (terminal or self._last_terminated):
            state = {"terminated": terminal or self._last_terminated}
        else:
            reason, message = self._waiting or ("ContainerCreating", "")
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}

        if self._finished:
            last = terminal or self._last_terminated or {}
            phase = "Succeeded" if last.get("exitCode") == 0 else "Failed"
        elif self.proc is None and self._attempts == 0:
            phase = "Pending"
        else:
            phase = "Running"
        phase = phase_override or phase

        self._set_condition("PodScheduled", "True")
        self._set_condition("Initialized", "True")
        self._set_condition("PodReadyToStartContainers", "True")
        self._set_condition("ContainersReady", "True" if ready else "False")
        self._set_condition("Ready", "True" if ready else "False")
        status: JSON = {
            "phase": phase,
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self._start_time,
            "conditions": [
                {"type": kind, "status": value, "lastTransitionTime": since}
                for kind, (value, since) in self._conditions.items()
            ],
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container.get("image", ""),
                    "imageID": "",
                    "containerID": f"camstream://{self.proc.pid}" if running and self.proc else "",
                    "ready": ready,
                    "started": running,
                    "restartCount": self.restart_count,
                    "state": state,
                    "lastState": (
                        {"terminated": self._last_terminated}
                        if self._last_terminated and not self._finished
                        else {}
                    ),
                }
            ],
        }
        if status == self._pushed and _api_agrees(pod, status):
            return
        try:
            self.config.client.merge_patch(
                f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}/status",
                {"metadata": {"uid": self.uid}, "status": status},
            )
            self._pushed = status
        except ApiError as exc:
            if exc.status == 404:
                self.gone()
            else:
                log.warning("%s/%s: status update failed: %s", self.namespace, self.pod_name, exc)
        except OSError as exc:
            log.warning("%s/%s: status update failed: %s", self.namespace, self.pod_name, exc)


def _api_agrees(pod: JSON, status: JSON) -> bool:
    """Whether the API's Ready conditions are still ours.

    The node lifecycle controller sets Ready=False on every pod of a node it
    has not heard from for its grace period (after an API server or etcd
    outage, that is every node); a kubelet posts its own status again, and so
    does the agent.
    """
    theirs = {
        c.get("type"): c.get("status") for c in (pod.get("status") or {}).get("conditions") or ()
    }
    ours = {c["type"]: c["status"] for c in status["conditions"]}
    return all(theirs.get(kind) == ours.get(kind) for kind in ("Ready", "ContainersReady"))
