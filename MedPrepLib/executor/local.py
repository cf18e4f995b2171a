"""The built-in pool: worker processes on this machine, tied to the life of the process that made them.

Workers come from a fork server that has imported the libraries but never run an ITK filter (where
there is none, Windows, they are spawned): a worker starts in milliseconds, and the calling process,
which may be Slicer or a notebook with threads running, is never forked. Each worker holds one job
at a time, so a worker that dies (out of memory, SIGKILL) is known to have died under that job: the
job runs again on a fresh worker, up to `retries` more times, then is reported as the job that
kills its workers. A worker dies with its driver: it watches a pipe only the driver holds open
(end of file: the driver is gone) and, on Linux, asks the kernel for SIGKILL when its parent (the
fork server, which itself exits when the driver does) dies.
"""
from __future__ import annotations

import os
import pickle
import threading
from collections import deque
from multiprocessing.connection import wait
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from . import DEFAULT_RETRIES, Executor, Outcome, killed_message, restore_threads
from .heap import roomy_heap


def _die_with_driver(lifeline: Any) -> None:
    """End this worker when the driver ends, even in the middle of a job."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: immediate, even while C code holds the GIL
    except (OSError, AttributeError):
        pass  # not Linux: the pipe below is enough

    def watch() -> None:
        try:
            lifeline.recv_bytes()
        except (EOFError, OSError):
            pass
        os._exit(70)

    threading.Thread(target=watch, daemon=True, name="medprep-lifeline").start()


def _serve(conn: Any, lifeline: Any) -> None:
    """A worker's life: run the jobs the driver sends until it sends None or goes away."""
    _die_with_driver(lifeline)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        index, fn, args = message
        try:
            with roomy_heap():
                reply = (index, "", fn(*args))
        except BaseException as exc:  # noqa: BLE001 - reported as this job's failure, the worker goes on
            reply = (index, f"{type(exc).__name__}: {exc}", None)
        try:
            conn.send(reply)
        except Exception as exc:  # noqa: BLE001 - a result that cannot be sent back
            conn.send((index, f"cannot return the result: {type(exc).__name__}: {exc}", None))


class _Worker:
    def __init__(self, context: Any, name: str):
        self.name = name
        self.conn, child = context.Pipe()
        lifeline, self.lifeline = context.Pipe(duplex=False)
        self.process = context.Process(target=_serve, args=(child, lifeline), name=f"medprep-{name}", daemon=True)
        self.process.start()
        child.close()
        lifeline.close()  # the driver keeps only the write end: its death closes the pipe
        self.job: Optional[int] = None

    def stop(self, force: bool = False) -> None:
        if not force and self.process.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()
        self.lifeline.close()


def _here(fn: Callable, index: int, args: tuple, as_sent: bool = False) -> Outcome:
    """A job run in the calling process, reported as a worker reports it. `as_sent`: its value as a
    worker would have sent it (pickled and back), so that the caller holds the same objects whoever
    ran the job (a header scan's files without their whole headers, say)."""
    try:
        value = fn(*args)
        return Outcome(index, pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL)) if as_sent else value,
                       worker="this process")
    except Exception as exc:  # noqa: BLE001 - as a worker reports it
        return Outcome(index, error=f"{type(exc).__name__}: {exc}", worker="this process")


def worker_imports(preload: Iterable[str]) -> List[str]:
    """What the fork server imports for its workers, in order: what every worker needs, imported once
    rather than by each; lean_imports first, as a worker is a process of ours (see there)."""
    return ["MedPrepLib.lean_imports", "MedPrepLib.executor.local"] + list(preload)


class LocalPool(Executor):
    """Worker processes for a whole run; a single worker is this process.

    The fork server starts with the pool and imports what the workers need while the caller goes on
    (reading its arguments, walking the input); workers start in the background on first use and
    each takes jobs as soon as it is up. Light jobs (see `Executor.map`) run in this process while
    none is, instead of waiting for the fork server's imports.
    """

    def __init__(self, workers: int, retries: int = DEFAULT_RETRIES, preload: Iterable[str] = ()):
        self.workers = self.per_host = max(1, workers)
        self.retries = retries
        self.preload = worker_imports(preload)
        self._context: Any = None
        self._slots: List[Optional[_Worker]] = []
        self._starting: Set[int] = set()   # slots whose worker a starter thread is starting
        self._arrived: List[Tuple[int, Any]] = []  # (slot, _Worker or the exception that stopped it)
        self._lock = threading.Lock()
        self._starters: List[threading.Thread] = []
        self._wake: Any = None  # (read, write) ends of a pipe on which starters say a worker is up
        if self.workers > 1:
            self._server()

    def limit(self, jobs: int) -> int:
        if not self._slots and not self._starting:  # no worker yet: fewer processes (one job runs here)
            self.workers = self.per_host = max(1, min(self.workers, jobs))
        return max(1, min(self.workers, jobs))

    def close(self) -> None:
        for starter in self._starters:
            starter.join()
        self._starters = []
        self._collect()
        for worker in self._slots:
            if worker is not None:
                worker.stop()
        self._slots = []
        if self._wake is not None:
            for end in self._wake:
                end.close()
            self._wake = None

    def worker_pids(self) -> Dict[str, int]:
        return {w.name: w.process.pid for w in self._slots if w is not None and w.process.pid}

    def _server(self) -> Any:
        """The context workers start from. A fork server is started at once: its imports (`preload`)
        take a second or two, spent while the caller goes on rather than when the first job waits."""
        if self._context is None:
            import multiprocessing

            if "forkserver" in multiprocessing.get_all_start_methods():
                from multiprocessing import forkserver

                self._context = multiprocessing.get_context("forkserver")
                self._context.set_forkserver_preload(self.preload)
                forkserver.ensure_running()
            else:
                self._context = multiprocessing.get_context("spawn")
        return self._context

    def _launch(self, n: int) -> None:
        """Start, in the background, the workers of the first `n` slots that are not running."""
        while len(self._slots) < n:
            self._slots.append(None)
        missing = []
        for slot in range(n):
            w = self._slots[slot]
            # A dead worker still holding a job is not replaced here: the job would be lost. Its death
            # is seen where the jobs' replies are read (its sentinel is ready), the job goes back in
            # line and its slot is emptied, to be filled by the next call.
            if slot in self._starting or (w is not None and (w.process.is_alive() or w.job is not None)):
                continue
            if w is not None:
                w.stop(force=True)
                self._slots[slot] = None
            missing.append(slot)
        if not missing:
            return
        context = self._server()
        if self._wake is None:
            self._wake = context.Pipe(duplex=False)
        self._starting.update(missing)
        wake = self._wake[1]

        def start() -> None:
            for slot in missing:
                try:
                    worker: Any = _Worker(context, f"worker {slot + 1}")
                except BaseException as exc:  # noqa: BLE001 - raised in the driver's thread
                    worker = exc
                with self._lock:
                    self._arrived.append((slot, worker))
                try:
                    wake.send_bytes(b"+")
                except OSError:  # closed: the pool is closing
                    pass

        starter = threading.Thread(target=start, daemon=True, name="medprep-start-workers")
        self._starters = [t for t in self._starters if t.is_alive()] + [starter]
        starter.start()

    def _collect(self) -> None:
        """Put the workers that have started into their slots."""
        with self._lock:
            arrived, self._arrived = self._arrived, []
        failure = None
        for slot, worker in arrived:
            self._starting.discard(slot)
            if isinstance(worker, BaseException):
                failure = worker
            else:
                self._slots[slot] = worker
        if failure is not None:
            raise failure

    def map(self, fn: Callable, arguments: Sequence[tuple], sizes: Optional[Sequence[float]] = None,
            light: bool = False) -> Iterator[Outcome]:
        if self.workers <= 1:
            try:
                for i, args in enumerate(arguments):
                    yield _here(fn, i, args)
            finally:
                restore_threads()
            return
        order = sorted(range(len(arguments)), key=lambda i: -sizes[i]) if sizes else range(len(arguments))
        queue: Deque[int] = deque(order)
        attempts = [0] * len(arguments)
        remaining = len(arguments)
        n = min(self.workers, len(arguments))
        ran_here = False

        def running() -> List[_Worker]:
            self._collect()
            return [w for w in self._slots[:n] if w is not None]

        def dispatch(workers: List[_Worker]) -> None:
            for w in workers:
                if w.job is None and queue:
                    w.job = queue.popleft()
                    attempts[w.job] += 1
                    try:
                        w.conn.send((w.job, fn, arguments[w.job]))
                    except OSError:  # it died between jobs: seen below as dead with this job
                        pass

        if remaining:
            self._launch(n)
        try:
            while remaining:
                workers = running()
                dispatch(workers)
                if light and queue and len(workers) < n:
                    # Workers are still starting (the first wait for the fork server's imports): this
                    # process runs a job meanwhile, the last in line, and looks again.
                    index = queue.pop()
                    attempts[index] += 1
                    remaining -= 1
                    ran_here = True
                    yield _here(fn, index, arguments[index], as_sent=True)
                    continue
                busy = [w for w in workers if w.job is not None]
                starting = len(workers) < n and self._wake is not None
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy] +
                             ([self._wake[0]] if starting else []))
                if starting and self._wake[0] in ready:
                    while self._wake[0].poll():
                        self._wake[0].recv_bytes()
                finished: List[Outcome] = []
                for w in busy:
                    index = w.job
                    reply = None
                    try:
                        if w.conn.poll():
                            reply = w.conn.recv()
                        elif w.process.is_alive():
                            continue
                    except (EOFError, OSError):
                        reply = None
                    w.job = None
                    if reply is not None:
                        remaining -= 1
                        finished.append(Outcome(index, reply[2], reply[1], w.name, attempts[index]))
                        continue
                    # The worker died holding this job: a fresh worker takes its place.
                    w.stop(force=True)
                    self._slots[self._slots.index(w)] = None
                    if attempts[index] > self.retries:
                        remaining -= 1
                        finished.append(Outcome(index, error=killed_message(attempts[index]), worker=w.name,
                                                attempts=attempts[index]))
                    else:
                        queue.appendleft(index)
                if queue and len(running()) < n:
                    self._launch(n)
                # The idle workers get their next jobs before the caller takes the results (it may
                # spend a while on each: journaling a case waits for the disk).
                dispatch(running())
                yield from finished
        finally:
            if ran_here:
                restore_threads()
            # Stopped early (an error, Ctrl-C): no worker may go on writing what is being cleaned up.
            for slot, w in enumerate(self._slots):
                if w is not None and w.job is not None:
                    w.stop(force=True)
                    self._slots[slot] = None
