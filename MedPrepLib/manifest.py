"""manifest.csv: what a dataset run wrote from what, journaled as cases finish.

Each finished case's row is appended at once (see `appendlog`), so a run killed at any moment
(Ctrl-C, SIGKILL) leaves a manifest that shows every case it finished, and a node reboot every case
but those of its last second; the next run of the same command skips those (a later row of a case
supersedes an earlier one). When the run
ends, the manifest is rewritten in case order, one row per case.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Dict, List, Optional

from .appendlog import AppendLog

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
        self._log: Optional[AppendLog] = None

    def __enter__(self) -> "Journal":
        self._log = AppendLog(self.path, superseded=True).__enter__()  # write_manifest replaces it
        if self._log.was_empty:
            self._log.write(",".join(MANIFEST_FIELDS) + "\n")
        # One row per write: the log flushes each as it comes.
        self._writer = csv.DictWriter(self._log, fieldnames=MANIFEST_FIELDS, extrasaction="ignore",
                                      lineterminator="\n")
        return self

    def append(self, row: Dict[str, Any]) -> None:
        assert self._log is not None
        self._writer.writerow(row)

    def __exit__(self, *exc: Any) -> None:
        if self._log is not None:
            self._log.__exit__(*exc)
            self._log = None


def write_manifest(path: Path, rows: List[Dict[str, Any]]) -> None:
    """The final manifest: one row per case, in case order."""
    from .atomic import atomic_open

    with atomic_open(path, "w", overwrite=True) as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
