"""An append-only text file of records (one per line) that a killed process leaves whole.

Each record is written and flushed to the operating system at once: a process killed at any
moment (Ctrl-C, SIGKILL, out of memory) leaves every record it appended, the last one at worst cut
short; readers skip such a line, and the next writer starts a line of its own. Records are forced
to the disk (fsync) when a record comes a second or more after the last forcing, and at close: a
machine that loses power loses at most the records of its last second, whose work the next run
does again. One fsync per record cost 0.1 s on a VM's disk, which held a dataset run's driver to
about ten cases a second.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO, Any, Optional, Union

SYNC_SECONDS = 1.0


class AppendLog:
    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        self.was_empty = True  # the file had no record when opened (a caller may write a header)
        self._fh: Optional[IO[str]] = None
        self._synced = 0.0

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
        return self

    def write(self, text: str) -> None:
        """Append `text` (whole lines) and flush it; force it to the disk if the last forcing is a second old."""
        assert self._fh is not None, "open the log with `with`"
        self._fh.write(text)
        self._fh.flush()
        now = time.monotonic()
        if now - self._synced >= SYNC_SECONDS:
            os.fsync(self._fh.fileno())
            self._synced = now

    def __exit__(self, *exc: Any) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
