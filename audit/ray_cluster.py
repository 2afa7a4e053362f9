"""The connection to a Ray cluster, and how the project travels to its workers.

Ray is an optional extra (``pip install 'ml-audit[ray]'``): this is the one module that imports
it first, so a missing install is one clear error. With no address it connects to
``$RAY_ADDRESS``, else Ray starts (or finds) a local instance. The project goes to the workers
as the ``runtime_env`` ``working_dir`` of every task, without version control, caches,
environments, mutmut's copies or the history store and reports; Ray refuses a package over its
gRPC limit (512 MiB zipped by default), and a cluster on a shared filesystem can skip shipping.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from audit.errors import AuditError
from audit.scratch import SKIP_DIRS

EXTRA = "pip install 'ml-audit[ray]'"
HEALTH_TIMEOUT = 10.0
SHARED_FS_VAR = "ML_AUDIT_RAY_SHARED_FS"   # set to 1: workers read the project at its own path
PROJECT_VAR = "ML_AUDIT_PROJECT"


def require_ray():
    """The ``ray`` module, or an error (exit 2) naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise AuditError(f"the ray executor needs Ray, which the core install does not include: {EXTRA}") from None
    return ray


class Cluster:
    """A connected Ray cluster: its size, its GPU models, and whether it is still there."""

    def __init__(self, ray, address: str, started: bool):
        self.ray, self.address, self.started = ray, address, started

    def _alive_nodes(self) -> list[dict]:
        return [n for n in self.ray.nodes() if n.get("Alive")]

    def cpus(self) -> int:
        return int(sum(n["Resources"].get("CPU", 0) for n in self._alive_nodes()))

    def gpus(self) -> int:
        return int(sum(n["Resources"].get("GPU", 0) for n in self._alive_nodes()))

    def node_cpus(self) -> int:
        """The most CPUs one node has: a task asking for more could never be scheduled."""
        return int(max((n["Resources"].get("CPU", 0) for n in self._alive_nodes()), default=1)) or 1

    def alive(self, timeout: float = HEALTH_TIMEOUT) -> bool:
        """True when a live node answers within *timeout* seconds (a lost head never answers)."""
        answer: list[bool] = []

        def ask():
            try:
                answer.append(bool(self._alive_nodes()))
            except Exception:  # noqa: BLE001 - any failure to answer means the cluster is gone
                answer.append(False)

        thread = threading.Thread(target=ask, daemon=True)
        thread.start()
        thread.join(timeout)
        return bool(answer and answer[0])

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def connect(address: str = "") -> Cluster:
    """Connect to *address*, ``$RAY_ADDRESS`` or a local instance; reuse a connection already made."""
    ray = require_ray()
    if ray.is_initialized():
        return Cluster(ray, address or "the connected cluster", started=False)
    address = address or os.environ.get("RAY_ADDRESS", "")
    try:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise AuditError(f"cannot connect to the Ray cluster at {address or 'a local instance'}: {exc}") from None
    return Cluster(ray, address or "a local Ray instance", started=True)


def excludes(cfg) -> list[str]:
    """What never travels to the workers: version control, caches, environments, ``mutants/``,
    ``.audit/``, the history store and the reports folder."""
    out = sorted(SKIP_DIRS) + ["*.egg-info", "*.pyc", "/.audit"]
    for rel in (cfg.db, cfg.reports_dir):
        if rel and not Path(rel).is_absolute():
            out.append("/" + Path(rel).as_posix())
    return out


def runtime_env(cfg, root: Path | None = None) -> dict:
    """The ``runtime_env`` of every task: the project uploaded once as a ``working_dir`` package,
    or, on a shared filesystem (``ML_AUDIT_RAY_SHARED_FS=1``), its path for the workers to read.

    Ray takes a local ``working_dir`` only in ``ray.init``; uploading it here (what ``ray.init``
    does) lets every task carry it, whether ml-audit or its caller made the connection."""
    import logging

    ray = require_ray()
    root = Path(root or cfg.root)
    env_vars = {"OMP_WAIT_POLICY": "PASSIVE"}
    if os.environ.get(SHARED_FS_VAR) == "1":
        return {"env_vars": {**env_vars, PROJECT_VAR: str(root)}}
    from ray._private.runtime_env.working_dir import upload_working_dir_if_needed

    try:
        env = upload_working_dir_if_needed(
            {"working_dir": str(root), "excludes": excludes(cfg)}, include_gitignore=True,
            scratch_dir=ray._private.worker.global_worker.node.get_runtime_env_dir_path(),
            logger=logging.getLogger("ml-audit.ray"))
    except (ValueError, OSError) as exc:   # over the size limit, unreadable
        raise AuditError(f"cannot ship {root} to the Ray workers: {exc}; exclude large files with a "
                         f".rayignore, or put the project on a filesystem the workers share and set "
                         f"{SHARED_FS_VAR}=1") from None
    env.pop("excludes", None)
    return {**env, "env_vars": env_vars}


def shipped_project() -> Path:
    """On a worker: the project as it reached this task (the working_dir, or the shared path)."""
    return Path(os.environ.get(PROJECT_VAR) or os.getcwd())
