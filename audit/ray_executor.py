"""The ``ray`` executor: every job a Ray task, run in a private copy of the shipped project.

Tasks on one node share the unpacked ``working_dir``, so each task mirrors it first (a unit's
tests may write files) and runs the job there. Ray's own retries are off: a worker or node that
dies mid-task loses only that job, which the driver resubmits once and counts (``rescheduled``);
values already returned are kept. Ctrl-C (any exception) cancels what is outstanding after
handing on what had finished. The driver waits with timeouts and asks the cluster whether it is
still there whenever nothing arrives, so a lost cluster ends in :class:`ExecutorLost`, not a hang.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from audit.job import ExecutorLost, Job
from audit.errors import AuditError

POLL = 0.5           # seconds per ray.wait
HEALTH_EVERY = 5.0   # seconds without a result before the cluster is asked whether it is still there


def _in_copy(job: Job, gpus: int) -> tuple[object, str]:
    """On a worker: run *job* in a mirror of the shipped project; its value and the GPU's model."""
    from audit import ray_cluster
    from audit.scratch import sync_copy

    tmp = Path(tempfile.mkdtemp(prefix="ml-audit-ray-"))
    try:
        where = sync_copy(ray_cluster.shipped_project(), tmp / "project")
        value = job.call(where, tmp / "work")
        return value, _gpu_model() if gpus else ""
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _gpu_model() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    except Exception:  # noqa: BLE001 - a model name is a nicety, never a failure
        return ""


class RayExecutor:
    """Keeps ``slots`` CPUs' worth of jobs in flight on a Ray cluster."""

    name = "ray"

    def __init__(self, cluster, env: dict, workers: int = 0):
        self.cluster = cluster
        self.env = env
        self.ray = cluster.ray
        self.node_cpus = cluster.node_cpus()
        self.has_gpus = cluster.gpus() > 0
        self.slots = max(1, min(workers, cluster.cpus()) if workers else cluster.cpus())
        self.rescheduled = 0
        self.gpu_models: list[str] = []
        self._task = self.ray.remote(_in_copy)

    @classmethod
    def connect(cls, cfg, workers: int = 0) -> "RayExecutor":
        from audit import ray_cluster

        cluster = ray_cluster.connect(cfg.address)
        try:
            return cls(cluster, ray_cluster.runtime_env(cfg), workers)
        except BaseException:
            cluster.close()
            raise

    def resources(self, job: Job) -> tuple[int, int]:
        """(CPUs, GPUs) to ask for *job*: never more CPUs than one node has, GPUs only where there are."""
        return max(1, min(job.cpus, self.node_cpus)), (job.gpus if self.has_gpus else 0)

    def _submit(self, job: Job):
        cpus, gpus = self.resources(job)
        return self._task.options(num_cpus=cpus, num_gpus=gpus, max_retries=0,
                                  runtime_env=self.env).remote(job, gpus)

    def run(self, next_job, on_result) -> None:
        ray = self.ray
        lost = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.LocalRayletDiedError, ray.exceptions.ObjectLostError,
                ray.exceptions.OutOfMemoryError)
        inflight: dict = {}
        used = 0
        last_news = time.monotonic()
        try:
            while True:
                while used < self.slots:
                    job = next_job()
                    if job is None:
                        break
                    inflight[self._submit(job)] = job
                    used += self.resources(job)[0]
                if not inflight:
                    return
                done, _ = ray.wait(list(inflight), num_returns=1, timeout=POLL)
                if not done:
                    if time.monotonic() - last_news > HEALTH_EVERY:
                        if not self.cluster.alive():
                            raise ExecutorLost(f"lost the Ray cluster ({self.cluster.address}): no live node "
                                               f"answered; {len(inflight)} job(s) were running")
                        last_news = time.monotonic()
                    continue
                last_news = time.monotonic()
                job = inflight.pop(done[0])
                used -= self.resources(job)[0]
                try:
                    value, gpu = ray.get(done[0])
                except lost as exc:
                    if job.tries:
                        raise ExecutorLost(f"{job.kind} {job.key} was lost twice on the Ray cluster: "
                                           f"{type(exc).__name__}: {_first_line(exc)}") from None
                    job.tries += 1
                    self.rescheduled += 1
                    inflight[self._submit(job)] = job
                    used += self.resources(job)[0]
                    continue
                except ray.exceptions.RayError as exc:
                    raise AuditError(f"a Ray worker could not run {job.kind} {job.key} (do the workers have "
                                     f"ml-audit and the project's requirements installed?): "
                                     f"{_first_line(exc)}") from None
                if gpu and gpu not in self.gpu_models:
                    self.gpu_models.append(gpu)
                on_result(job, value)
        except BaseException:
            refs = list(inflight)
            ready, rest = ray.wait(refs, num_returns=len(refs), timeout=0) if refs else ([], [])
            for ref in rest:
                ray.cancel(ref, force=True)
            for ref in ready:   # finished before the stop: keep what they measured
                try:
                    value, _ = ray.get(ref, timeout=1)
                except Exception:  # noqa: BLE001 - a lost job has nothing to keep
                    continue
                on_result(inflight[ref], value)
            raise

    def close(self) -> None:
        self.cluster.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__
