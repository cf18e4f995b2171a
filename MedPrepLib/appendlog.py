"""An append-only text file of records (one per line) that a killed process leaves whole.

Each record is written and flushed to the operating system at once: a process killed at any
moment (Ctrl-C, SIGKILL, out of memory) leaves every record it appended, the last one at worst cut
short; readers skip such a line, and the next writer starts a line of its own. Records are forced
to the disk (fsync) when a record comes a second or more after the last forcing, and at close: a
machine that loses power loses at most the records of its last second, whose work the next run
does again. One fsync per record cost 0.1 s on a VM's disk, which held a dataset run's driver to
about ten cases a second; the forcing is done by a thread of the log's own, so that the writer (the
driver handing out the next jobs) never waits for the disk, except at close.

A log its owner replaces or removes as soon as its work ends well (the manifest journal, rewritten
in case order; the statistics journal, removed once statistics.json is written) is `superseded`:
it is forced at close only when that work ended in an error, as then the log is what is left of
it. Forcing a file about to be replaced cost a run 0.07-0.09 s per log on this VM, with every
worker idle.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import IO, Any, Optional, Union

SYNC_SECONDS = 1.0


class AppendLog:
    def __init__(self, path: Union[str, Path], superseded: bool = False):
        self.path = Path(path)
        self.superseded = superseded
        self.was_empty = True  # the file had no record when opened (a caller may write a header)
        self._fh: Optional[IO[str]] = None
        self._synced = 0.0
        self._sync_wanted = threading.Event()
        self._closing = False
        self._syncer: Optional[threading.Thread] = None

    def __enter__(self) -> "AppendLog":
        last = b""
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                last = fh.read(1)
        self.was_empty = not last
        self._fh = open(self.path, "a", newline="", encoding="utf-8")
        if last and last != b"\n":  # the last record was cut short: the next one starts a line of its own
            self._fh.write("\n")
        self._synced = time.monotonic()
        self._closing = False
        self._syncer = threading.Thread(target=self._sync_when_asked, args=(self._fh.fileno(),), daemon=True,
                                        name="medprep-log-sync")
        self._syncer.start()
        return self

    def _sync_when_asked(self, fd: int) -> None:
        while True:
            self._sync_wanted.wait()
            self._sync_wanted.clear()
            if self._closing:
                return
            try:
                os.fsync(fd)
            except OSError:
                pass  # a failing disk: the forcing at close reports it

    def write(self, text: str) -> None:
        """Append `text` (whole lines) and flush it; if the last forcing is a second old, have the log's
        thread force it to the disk."""
        assert self._fh is not None, "open the log with `with`"
        self._fh.write(text)
        self._fh.flush()
        now = time.monotonic()
        if now - self._synced >= SYNC_SECONDS:
            self._synced = now
            self._sync_wanted.set()

    def __exit__(self, exc_type: Any = None, *exc: Any) -> None:
        if self._fh is not None:
            self._fh.flush()
            if self._syncer is not None:
                self._closing = True
                self._sync_wanted.set()
                self._syncer.join()
                self._syncer = None
            if exc_type is not None or not self.superseded:
                os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
