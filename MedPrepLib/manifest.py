"""manifest.csv: what a dataset run wrote from what, journaled as cases finish.

Each finished case's row is appended and flushed to disk at once, so a run killed at any moment
(Ctrl-C, SIGKILL, a node reboot) leaves a manifest that shows every case it finished; the next run
of the same command skips those (a later row of a case supersedes an earlier one). When the run
ends, the manifest is rewritten in case order, one row per case.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import IO, Any, Dict, List, Optional

MANIFEST_FIELDS = ["case", "split", "status", "image_in", "label_in", "outputs", "fingerprint", "seconds",
                   "error"]


def read_manifest(path: Path) -> Dict[str, Dict[str, str]]:
    """The latest row of each case; a row cut short by a crash lacks fields and matches nothing."""
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["case"]: row for row in csv.DictReader(fh) if row.get("case")}


class Journal:
    """Rows appended to manifest.csv as cases finish."""

    def __init__(self, path: Path):
        self.path = path
        self._fh: Optional[IO[str]] = None

    def __enter__(self) -> "Journal":
        last = b""
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                last = fh.read(1)
        self._fh = open(self.path, "a", newline="", encoding="utf-8")
        if not last:
            self._fh.write(",".join(MANIFEST_FIELDS) + "\n")
        elif last != b"\n":  # the last row was cut short: the next one starts a line of its own
            self._fh.write("\n")
        self._writer = csv.DictWriter(self._fh, fieldnames=MANIFEST_FIELDS, extrasaction="ignore",
                                      lineterminator="\n")
        return self

    def append(self, row: Dict[str, Any]) -> None:
        assert self._fh is not None
        self._writer.writerow(row)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def __exit__(self, *exc: Any) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def write_manifest(path: Path, rows: List[Dict[str, Any]]) -> None:
    """The final manifest: one row per case, in case order."""
    from .atomic import atomic_open

    with atomic_open(path, "w", overwrite=True) as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
