"""Running jobs in parallel: one interface, two engines.

`LocalPool` (the default) runs jobs in worker processes on this machine; `DaskPool` runs them on a
Dask cluster (`--scheduler tcp://HOST:8786`, or `--cluster local[:N]` for a LocalCluster). Callers
(`medprep run`'s passes, the DICOM header scan, `medprep anonymize`) hand over module-level
functions with paths and small parameters, never voxel arrays, and get an `Outcome` per job as jobs
finish. A job that raises, or whose worker dies more often than the retries allow, comes back as
an `Outcome` with an error: one case never stops a run. Dask is imported only when asked for.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from ..errors import MedPrepError

DEFAULT_RETRIES = 2
STORAGE_HINT = "inputs and outputs must be on storage every worker sees, mounted at the same path"


@dataclass
class Outcome:
    """What became of one job: its value, or why there is none."""

    index: int
    value: Any = None
    error: str = ""    # the job raised, or killed its worker every time it ran
    worker: str = ""   # which worker ran it (the last one, after retries)
    attempts: int = 1  # 2 or more: its worker died under it and it ran again


def killed_message(attempts: int) -> str:
    """A job whose worker died every time it ran (the retries used up)."""
    return (f"its worker process died every time it ran ({attempts} times; out of memory?); "
            "run it alone or on a worker with more memory")


def usable_cpus() -> int:
    """How many CPUs this process may run on: a taskset or a cluster job's cgroup may allow fewer
    than the machine has, and threads beyond them only compete."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


# The calling process's own thread settings while jobs that run in it have changed them (see
# `limit_threads`); None when they are its own.
_caller_threads: Optional[Tuple[int, int]] = None


def limit_threads(per_host: int) -> None:
    """ITK's and gzip's threads in a worker: its share of the CPUs among the `per_host` workers of its
    machine (more threads than that only compete with the other workers). In the calling process
    (a job run there) the settings it had are kept, for `restore_threads` to give them back."""
    global _caller_threads
    import SimpleITK as sitk

    from ..nifti import gzip_threads, set_gzip_threads

    if _caller_threads is None:
        _caller_threads = (sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(), gzip_threads())
    share = max(1, usable_cpus() // max(1, per_host))
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(share)
    set_gzip_threads(share)


def restore_threads() -> None:
    """Give the calling process back the ITK and gzip thread counts it had before jobs run in it
    called `limit_threads`: the caller (Slicer, a notebook) keeps its own settings."""
    global _caller_threads
    if _caller_threads is None:
        return
    import SimpleITK as sitk

    from ..nifti import set_gzip_threads

    itk, gz = _caller_threads
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(itk)
    set_gzip_threads(gz)
    _caller_threads = None


class Executor:
    """The interface both engines implement (see the module documentation)."""

    workers: int = 1   # jobs that run at once
    per_host: int = 1  # worker processes sharing one machine: each gets its share of the CPUs

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers this executor started."""

    def limit(self, jobs: int) -> int:
        """How many jobs run at once for a run of `jobs` jobs."""
        return max(1, min(self.workers, jobs))

    def map(self, fn: Callable, arguments: Sequence[tuple], sizes: Optional[Sequence[float]] = None,
            light: bool = False) -> Iterator[Outcome]:
        """fn(*a) for each a of `arguments`, as they finish. With `sizes`, the largest jobs start first:
        a large case started last would leave the other workers idle while it runs alone. `light`
        jobs (little memory, no threads of their own: reading headers, de-identifying files) may run
        in the calling process while the workers start, rather than wait for them."""
        raise NotImplementedError

    def ordered(self, fn: Callable, arguments: Sequence[Any]) -> Iterator[Any]:
        """fn(a) for each a of `arguments` (light jobs, see `map`), in their order; a job that fails
        raises MedPrepError."""
        done: Dict[int, Any] = {}
        following = 0
        for outcome in self.map(fn, [(a,) for a in arguments], light=True):
            if outcome.error:
                raise MedPrepError(f"a worker failed: {outcome.error}")
            done[outcome.index] = outcome.value
            while following in done:
                yield done.pop(following)
                following += 1

    def worker_pids(self) -> Dict[str, int]:
        """The process id of each worker (for tests and diagnostics)."""
        return {}

    def probe(self, checks: List[Tuple[str, str]]) -> None:
        """Check on every worker that each (what, path) of `checks` is there: what is "read" (a file or
        folder that must exist and be readable) or "write" (a folder in which a file can be created).
        Raises MedPrepError naming the first worker and path that fail."""
        failure = probe_paths(checks)
        if failure:
            raise MedPrepError(f"this machine {failure}", hint=STORAGE_HINT)


def probe_paths(checks: List[Tuple[str, str]]) -> str:
    """The first failing check of `Executor.probe`, as the rest of a sentence, or ''."""
    import tempfile

    for what, path in checks:
        if what == "read":
            if not os.path.exists(path):
                return f"cannot see {path}"
            if not os.access(path, os.R_OK):
                return f"cannot read {path}"
        else:
            try:
                os.makedirs(path, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=".medprep-probe-", dir=path)
                os.close(fd)
                os.unlink(tmp)
            except OSError as exc:
                return f"cannot write into {path} ({exc.strerror or exc})"
    return ""


CLUSTER_RE = re.compile(r"^local(?::(\d+))?$")


def make_executor(workers: Optional[int] = None, scheduler: Optional[str] = None, cluster: Optional[str] = None,
                  retries: int = DEFAULT_RETRIES, preload: Iterable[str] = ()) -> Executor:
    """The executor the command line asks for: a Dask cluster (existing or local) or the local pool."""
    if retries < 0:
        raise MedPrepError(f"--retries must be 0 or more, got {retries}")
    if workers is not None and workers < 1:
        raise MedPrepError(f"--workers must be at least 1, got {workers}")
    if scheduler and cluster:
        raise MedPrepError("give either --scheduler or --cluster, not both")
    if cluster is not None:
        match = CLUSTER_RE.match(cluster.strip())
        if not match:
            raise MedPrepError(f"--cluster takes local or local:N, got '{cluster}'")
        n = int(match.group(1)) if match.group(1) else (workers or usable_cpus())
        if n < 1:
            raise MedPrepError(f"--cluster local:N needs N of at least 1, got {n}")
        from .dask_pool import DaskPool

        return DaskPool(local_workers=n, retries=retries, preload=preload)
    if scheduler:
        from .dask_pool import DaskPool

        return DaskPool(address=scheduler, retries=retries, preload=preload)
    from .local import LocalPool

    return LocalPool(max(1, workers or usable_cpus()), retries=retries, preload=preload)


def worker_counts(outcomes: Iterable[Outcome]) -> Dict[str, int]:
    """Jobs done per worker, for a run's summary."""
    counts: Dict[str, int] = {}
    for o in outcomes:
        if o.worker:
            counts[o.worker] = counts.get(o.worker, 0) + 1
    return counts


def as_path(path: Any) -> str:
    return str(Path(path).resolve())
