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
import threading
from collections import deque
from multiprocessing.connection import wait
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Sequence

from . import DEFAULT_RETRIES, Executor, Outcome, killed_message



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


class LocalPool(Executor):
    """Worker processes for a whole run, started on first use; a single worker is this process."""

    def __init__(self, workers: int, retries: int = DEFAULT_RETRIES, preload: Iterable[str] = ()):
        self.workers = self.per_host = max(1, workers)
        self.retries = retries
        # What every worker needs, imported once by the fork server rather than by each worker.
        self.preload = ["MedPrepLib.executor.local"] + list(preload)
        self._context: Any = None
        self._slots: List[Optional[_Worker]] = []

    def limit(self, jobs: int) -> int:
        if self._context is None:  # not started yet: fewer processes (one job runs here)
            self.workers = self.per_host = max(1, min(self.workers, jobs))
        return max(1, min(self.workers, jobs))

    def close(self) -> None:
        for worker in self._slots:
            if worker is not None:
                worker.stop()
        self._slots = []

    def worker_pids(self) -> Dict[str, int]:
        return {w.name: w.process.pid for w in self._slots if w is not None and w.process.pid}

    def _start(self, slot: int) -> _Worker:
        if self._context is None:
            import multiprocessing

            if "forkserver" in multiprocessing.get_all_start_methods():
                self._context = multiprocessing.get_context("forkserver")
                self._context.set_forkserver_preload(self.preload)
            else:
                self._context = multiprocessing.get_context("spawn")
        while len(self._slots) <= slot:
            self._slots.append(None)
        worker = _Worker(self._context, f"worker {slot + 1}")
        self._slots[slot] = worker
        return worker

    def map(self, fn: Callable, arguments: Sequence[tuple], sizes: Optional[Sequence[float]] = None
            ) -> Iterator[Outcome]:
        if self.workers <= 1:
            for i, args in enumerate(arguments):
                try:
                    yield Outcome(i, fn(*args), worker="this process")
                except Exception as exc:  # noqa: BLE001 - as a worker reports it
                    yield Outcome(i, error=f"{type(exc).__name__}: {exc}", worker="this process")
            return
        order = sorted(range(len(arguments)), key=lambda i: -sizes[i]) if sizes else range(len(arguments))
        queue: Deque[int] = deque(order)
        attempts = [0] * len(arguments)
        remaining = len(arguments)
        n = min(self.workers, len(arguments))
        workers = [w if w is not None and w.process.is_alive() else self._start(slot)
                   for slot, w in enumerate((self._slots + [None] * n)[:n])]
        try:
            while remaining:
                for w in workers:
                    if w.job is None and queue:
                        w.job = queue.popleft()
                        attempts[w.job] += 1
                        w.conn.send((w.job, fn, arguments[w.job]))
                busy = [w for w in workers if w.job is not None]
                wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for slot, w in enumerate(workers):
                    if w.job is None:
                        continue
                    index = w.job
                    reply = None
                    try:
                        if w.conn.poll():
                            reply = w.conn.recv()
                        elif w.process.is_alive():
                            continue
                    except (EOFError, OSError):
                        reply = None
                    if reply is not None:
                        w.job = None
                        remaining -= 1
                        yield Outcome(index, reply[2], reply[1], w.name, attempts[index])
                        continue
                    # The worker died holding this job: a fresh worker takes its place.
                    w.job = None
                    w.stop(force=True)
                    workers[slot] = self._start(slot)
                    if attempts[index] > self.retries:
                        remaining -= 1
                        yield Outcome(index, error=killed_message(attempts[index]), worker=w.name,
                                      attempts=attempts[index])
                    else:
                        queue.appendleft(index)
        finally:
            # Stopped early (an error, Ctrl-C): no worker may go on writing what is being cleaned up.
            for slot, w in enumerate(workers):
                if w.job is not None:
                    w.stop(force=True)
                    self._slots[slot] = None
