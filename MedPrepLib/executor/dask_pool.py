"""Jobs on a Dask cluster: an existing one (`--scheduler tcp://HOST:8786`) or a LocalCluster.

Needs the `dask` extra (`pip install "medpreplib[dask]"`) here and MedPrepLib on every worker.
A worker that dies under a job (out of memory, SIGKILL, node lost) makes the scheduler run the job
again elsewhere; after `retries` such deaths it gives up on the job (Dask's KilledWorker), which
comes back as that job's error. A worker that dies holding results not gathered yet has those jobs
run again too (without a death counted against them); each job's outcome says how many times it ran
either way. The scheduler's `allowed-failures` is set to `retries` for the run and, on a scheduler
others may share, put back as it was when the run ends. Every worker is checked before the run
(MedPrepLib, its version, what the jobs import, the run's paths); one that joins later is checked by
its first job, which stops the run naming it if the check fails.
"""
from __future__ import annotations

import logging
import pickle
import uuid
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from ..errors import MedPrepError
from . import DEFAULT_RETRIES, STORAGE_HINT, Executor, Outcome, killed_message

EXTRA_HINT = 'install the Dask extra: pip install "medpreplib[dask]"'
CONNECT_TIMEOUT = 10  # seconds to reach a scheduler
WORKERS_TIMEOUT = 60  # seconds to wait for a first worker to join it


def _unready(modules: List[str], version: str, checks: List[Tuple[str, str]]) -> Tuple[str, str]:
    """Runs on a worker, sent by value (it must work where MedPrepLib is missing): what keeps this
    worker from running MedPrep jobs, as the rest of a sentence, and its kind ("install": a missing
    module or another MedPrepLib version; "storage": a path of `checks` it cannot see), or ("", "")."""
    import importlib

    for name in ["MedPrepLib"] + modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - ImportError, or a compiled module that fails to load
            return f"cannot import {name} ({exc})", "install"
    mine = getattr(importlib.import_module("MedPrepLib"), "__version__", "")
    if mine != version:
        return f"has MedPrepLib {mine or '(no version)'}, this machine {version}", "install"
    failure = importlib.import_module("MedPrepLib.executor").probe_paths(checks)
    return (failure, "storage") if failure else ("", "")


def _checked_call(job: bytes, run: str, modules: List[str], version: str,
                  checks: List[Tuple[str, str]]) -> Tuple[str, Tuple[str, str], Any]:
    """Runs on a worker, sent by value: (its address, ("", ""), the job's value), or (its address,
    what keeps it from running MedPrep jobs, None). The check is `_unready`'s, made once per worker
    and run: a worker that joins an adaptive cluster after the run's probe is checked before its
    first job. The job (function and arguments) comes pickled, to be unpickled only once MedPrepLib
    is known to be there."""
    import pickle

    from distributed import get_worker

    worker = get_worker()
    checked = worker.__dict__.setdefault("medprep_checked", {})
    if run not in checked:
        checked[run] = _unready(modules, version, checks)
    if checked[run][0]:
        return worker.address, checked[run], None
    from MedPrepLib.executor.heap import roomy_heap

    fn, args = pickle.loads(job)
    with roomy_heap():  # Dask's nanny pins glibc's thresholds, to jobs' cost
        return worker.address, ("", ""), fn(*args)


def _on_scheduler(client: Any, fn: Callable, *args: Any) -> Any:
    """fn(*args, dask_scheduler=the scheduler) run there; `fn` travels by value, so that the
    scheduler needs no MedPrepLib."""
    return client.run_on_scheduler(_by_value(fn), *args)


def _set_allowed_failures(n: int, dask_scheduler: Any = None) -> int:
    before, dask_scheduler.allowed_failures = dask_scheduler.allowed_failures, n
    return before


def _runs(keys: List[str], dask_scheduler: Any = None) -> Dict[str, int]:
    """How many times each task was started. A worker's death under a task counts (`suspicious`); so
    does one while it held the task's result, not yet gathered, which the scheduler computes again
    without counting a death: only its transition log shows the task processing again. The log keeps
    the last transitions only (1,000 by default); the second run of a task is recent when it
    finishes, the first may have left it: a run can go uncounted, never one counted twice."""
    tasks = dask_scheduler.tasks
    present = [k for k in keys if k in tasks]
    logged = dict.fromkeys(present, 0)
    for t in dask_scheduler.story(*present):  # one pass over the log for the whole batch
        if t[2] == "processing" and t[0] in logged:
            logged[t[0]] += 1
    return {k: max(1 + tasks[k].suspicious, logged[k]) for k in present}


class DaskPool(Executor):
    def __init__(self, address: Optional[str] = None, local_workers: Optional[int] = None,
                 retries: int = DEFAULT_RETRIES, preload: Iterable[str] = ()):
        try:
            import distributed
        except ImportError:
            raise MedPrepError("--scheduler and --cluster need Dask, which is not installed", hint=EXTRA_HINT) from None
        self.retries = retries
        self.preload = list(preload)  # what the jobs import: every worker must be able to
        self.cluster: Any = None
        self._allowed_failures: Optional[int] = None  # the shared scheduler's own value, put back on close
        self._checks: List[Tuple[str, str]] = []  # the paths of the last `probe`, which every worker must see
        self._run = ""
        logging.getLogger("distributed").setLevel(logging.ERROR)
        if address:
            try:
                self.client = distributed.Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
            except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, ValueError for a bad address
                raise MedPrepError(f"cannot reach the Dask scheduler at {address} ({type(exc).__name__})",
                                   hint="start one with `dask scheduler` and workers with `dask worker "
                                        f"{address}`, or check the address and the firewall") from None
        else:
            self.cluster = distributed.LocalCluster(n_workers=local_workers or 1, threads_per_worker=1,
                                                    processes=True, dashboard_address=None,
                                                    silence_logs=logging.ERROR)
            self.client = distributed.Client(self.cluster, set_as_default=False)
        try:
            self._check_workers(address or "the local cluster")
            before = _on_scheduler(self.client, _set_allowed_failures, retries)
            self._allowed_failures = before if address else None
        except BaseException:
            self.close()
            raise

    def _check_workers(self, where: str) -> None:
        try:
            self.client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
        except Exception:  # noqa: BLE001 - TimeoutError, by version
            raise MedPrepError(f"no Dask worker joined {where} within {WORKERS_TIMEOUT} s",
                               hint="start workers with `dask worker SCHEDULER_ADDRESS`") from None
        self._check_every_worker()
        info = self.client.scheduler_info()["workers"].values()
        self.workers = max(1, sum(w.get("nthreads", 1) for w in info))
        hosts: Dict[str, int] = {}
        for w in info:
            hosts[w.get("host", "")] = hosts.get(w.get("host", ""), 0) + w.get("nthreads", 1)
        self.per_host = max(hosts.values())

    def _check_every_worker(self) -> None:
        """`_unready` on every worker of the cluster now; the jobs check the workers that join later."""
        from .. import __version__

        self._run = uuid.uuid4().hex  # a new check for every worker at its next job
        results = self.client.run(_by_value(_unready), self.preload, __version__, self._checks, on_error="return")
        for worker, result in sorted(results.items()):
            if isinstance(result, BaseException):
                result = (f"cannot run MedPrep jobs ({type(result).__name__}: {result})", "install")
            _refuse(worker, result)

    def close(self) -> None:
        client, cluster, self.client, self.cluster = getattr(self, "client", None), self.cluster, None, None
        if client is not None:
            if self._allowed_failures is not None:
                try:
                    _on_scheduler(client, _set_allowed_failures, self._allowed_failures)
                except Exception:  # noqa: BLE001 - a scheduler gone by now has nothing to put back
                    pass
            client.close()
        if cluster is not None:
            cluster.close()

    def probe(self, checks: List[Tuple[str, str]]) -> None:
        self._checks = list(checks)
        self._check_every_worker()

    def worker_pids(self) -> Dict[str, int]:
        import os

        return self.client.run(os.getpid)

    def map(self, fn: Callable, arguments: Sequence[tuple], sizes: Optional[Sequence[float]] = None,
            light: bool = False) -> Iterator[Outcome]:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        from .. import __version__

        if not arguments:
            return
        # Submitted largest first: among tasks of equal priority the scheduler starts older ones first.
        order = sorted(range(len(arguments)), key=lambda i: -sizes[i]) if sizes else list(range(len(arguments)))
        run = uuid.uuid4().hex[:8]
        keys = [f"medprep-{getattr(fn, '__name__', 'job')}-{run}-{i}" for i in order]
        index = {k: i for k, i in zip(keys, order)}
        jobs = [pickle.dumps((fn, arguments[i]), pickle.HIGHEST_PROTOCOL) for i in order]
        futures = self.client.map(_by_value(_checked_call), jobs, key=keys, pure=False, run=self._run,
                                  modules=self.preload, version=__version__, checks=self._checks)
        pending = set(keys)
        completed = as_completed(futures, loop=self.client.loop)
        try:
            for batch in completed.batches():
                finished = [f for f in batch if f.status == "finished"]
                try:
                    values = dict(zip((f.key for f in finished), self.client.gather(finished)))
                except Exception:  # noqa: BLE001 - a result was lost with its worker: one by one below
                    values = {}
                try:  # after the gather, which waits for a lost result to be computed again
                    runs = _on_scheduler(self.client, _runs, [f.key for f in batch])
                except Exception:  # noqa: BLE001 - the counts only inform the summary
                    runs = {}
                for future in batch:
                    i = index[future.key]
                    attempts = runs.get(future.key, 1)
                    if future.status == "error":
                        exc = future.exception()
                        if isinstance(exc, KilledWorker):
                            attempts = max(attempts - 1, self.retries + 1)
                            outcome = Outcome(i, error=killed_message(attempts), attempts=attempts)
                        else:
                            outcome = Outcome(i, error=f"{type(exc).__name__}: {exc}", attempts=attempts)
                    elif future.key in values:
                        worker, unready, value = values.pop(future.key)
                        _refuse(worker, unready, ", which joined the cluster after the run started,")
                        outcome = Outcome(i, value, worker=worker, attempts=attempts)
                    else:  # its result was lost with its worker: it is computed again
                        completed.add(future)
                        continue
                    pending.discard(future.key)
                    future.release()
                    yield outcome
        finally:
            if pending:  # stopped early: nothing more may run for this map
                self.client.cancel([f for f in futures if f.key in pending])


def _by_value(fn: Callable) -> Callable:
    """A copy of `fn` that belongs to no module: cloudpickle sends such a function's code rather
    than its name. The functions of this module it calls go along the same way."""
    import types

    names = {"__builtins__": __builtins__}
    for name in fn.__code__.co_names:
        if name in _SENT_BY_VALUE:
            names[name] = _by_value(globals()[name])
    return types.FunctionType(fn.__code__, names, fn.__name__, fn.__defaults__)


_SENT_BY_VALUE = ("_unready",)


def _refuse(worker: str, unready: Tuple[str, str], note: str = "") -> None:
    """Stop the run with one line naming `worker` and what keeps it from running MedPrep jobs."""
    from .. import __version__

    failure, kind = unready
    if not failure:
        return
    hint = STORAGE_HINT if kind == "storage" else (
        f"install MedPrepLib with its dependencies in every worker's environment, the version of this machine: "
        f'pip install "medpreplib[dask]=={__version__}"')
    raise MedPrepError(f"Dask worker {worker}{note} {failure}", hint=hint)
