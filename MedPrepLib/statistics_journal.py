"""statistics-journal.jsonl: the statistics pass's per-case summaries, journaled as they arrive.

A dataset run killed during its statistics pass (Ctrl-C, SIGKILL, a node reboot) leaves here the
summaries it had received; the next run of the same command takes them from here and computes only
the others. Each line is one training case's summary for one step, appended at once (see `appendlog`),
keyed by a digest of all that decides it: the pipeline, the step, the statistics of the steps before
it, the case's input files (names, sizes, modification times) and the labels kept. A line whose key
no longer matches (an input or the pipeline changed) is ignored, as is a line cut short by a crash.

Summaries (counts, float64 sums, samples, landmarks) are written exactly: floats as JSON's
round-tripping repr, arrays as their bytes with dtype and shape. Merged in case order, those read
back give the statistics of an uninterrupted run, bit for bit. The run removes the journal once
statistics.json is written.
"""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .appendlog import AppendLog

JOURNAL_NAME = "statistics-journal.jsonl"


def _encode(value: Any) -> Any:
    """JSON for a summary, with every type kept: dicts, tuples and arrays are tagged."""
    if value is None or isinstance(value, (bool, int, float, str)) and not isinstance(value, np.generic):
        return value
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise TypeError("an array of Python objects")
        return {"array": [array.dtype.str, list(array.shape), base64.b64encode(array.tobytes()).decode("ascii"),
                          isinstance(value, np.generic)]}
    if isinstance(value, (list, tuple)):
        items = [_encode(v) for v in value]
        return items if isinstance(value, list) else {"tuple": items}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: _encode(v) for k, v in value.items()}}
    raise TypeError(f"a {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "tuple" in value:
        return tuple(_decode(v) for v in value["tuple"])
    if "dict" in value:
        return {k: _decode(v) for k, v in value["dict"].items()}
    dtype, shape, data, scalar = value["array"]
    array = np.frombuffer(base64.b64decode(data), np.dtype(dtype)).reshape(shape).copy()
    return array[()] if scalar else array


class SummaryJournal:
    """The journal of one run's statistics pass (see the module documentation).

    `stamps`: each case's input stamp (`Case.input_stamp`), as the run took them.
    """

    def __init__(self, path: Path, pipeline_digest: str, stamps: Dict[str, Any]):
        self.path = Path(path)
        self.pipeline_digest = pipeline_digest
        self.stamps = stamps
        self.reused = 0     # summaries taken from the journal
        self.computed = 0   # summaries computed by this run
        self._found: Dict[Tuple[str, str], Any] = {}
        self._log: Optional[AppendLog] = None

    def key(self, case: Any, index: int, statistics: Dict[int, Dict[str, Any]]) -> str:
        """What decides `case`'s summary for step `index`, as a digest."""
        decided_by = [self.pipeline_digest, index, {str(k): v for k, v in statistics.items()},
                      self.stamps.get(case.case_id), case.label_names]
        return hashlib.sha256(json.dumps(decided_by, sort_keys=True, default=str).encode()).hexdigest()

    def __enter__(self) -> "SummaryJournal":
        if self.path.is_file():
            with open(self.path, "rb") as fh:
                for line in fh:
                    try:
                        entry = json.loads(line)
                        self._found[(entry["case"], entry["key"])] = entry["summary"]
                    except (ValueError, KeyError, TypeError):
                        continue  # cut short by a crash, or not ours: that case is computed again
        self._log = AppendLog(self.path, superseded=True).__enter__()  # removed once statistics.json is written
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._log is not None:
            self._log.__exit__(*exc)
            self._log = None

    def found(self, case: Any, index: int, statistics: Dict[int, Dict[str, Any]]) -> List[Any]:
        """[the summary] journaled for this case, step and earlier statistics, or []."""
        entry = self._found.get((case.case_id, self.key(case, index, statistics)))
        if entry is None:
            return []
        try:
            summary = _decode(entry)
        except (ValueError, KeyError, TypeError):
            return []
        self.reused += 1
        return [summary]

    def append(self, case: Any, index: int, statistics: Dict[int, Dict[str, Any]], summary: Any) -> None:
        """Journal a summary just received (one a step makes of other types is not journaled: it is
        computed again after a crash)."""
        assert self._log is not None
        self.computed += 1
        try:
            line = json.dumps({"case": case.case_id, "key": self.key(case, index, statistics),
                               "summary": _encode(summary)})
        except TypeError:
            return
        self._log.write(line + "\n")

    def remove(self) -> None:
        """The statistics are written: what the journal kept is in statistics.json."""
        self.__exit__()
        if self.path.exists():
            self.path.unlink()
