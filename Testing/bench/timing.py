"""Timing helpers shared by the bench_*.py modules: wall time and peak memory of a command.

Each command is started by a small wrapper process that times it and reads its peak resident set
from getrusage(RUSAGE_CHILDREN). The wrapper is needed because a child forked straight from this
(large) process would report this process's memory as its own peak: Linux counts the memory the
child had before exec. So the peak reported is the command's own, but never below the wrapper's
size (about 12 MB).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CONFORMANCE = ROOT.parent / "shared" / "conformance"


@dataclass
class Measurement:
    best_s: float | None = None
    peak_rss_mb: float | None = None
    times_s: list[float] = field(default_factory=list)
    error: str | None = None


def tool(name: str) -> str | None:
    """Path of an executable, preferring the one in this interpreter's venv."""
    local = VENV_BIN / name
    return str(local) if local.exists() else shutil.which(name)


_WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
print(json.dumps({"wall": wall, "peak": peak, "code": proc.returncode, "tail": tail[0]}))
"""


def run_once(cmd: Sequence[str], cwd: Path | None = None) -> tuple[float, float, int, str]:
    """(wall seconds, peak RSS in MB, exit code, last line of stderr) for one run of `cmd`."""
    out = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], cwd=cwd, capture_output=True,
                         text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # ru_maxrss is in kB on Linux, in bytes on macOS.
    peak_mb = result["peak"] / (2 ** 20 if sys.platform == "darwin" else 1024)
    return result["wall"], peak_mb, result["code"], result["tail"]


def measure(cmd: Sequence[str], repeats: int, prepare: Callable[[], None] | None = None,
            cwd: Path | None = None) -> Measurement:
    """Best wall time and peak memory of one command; see `measure_all`."""
    return measure_all({"": cmd}, repeats, prepare, cwd)[""]


def measure_all(commands: Mapping[str, Sequence[str]], repeats: int,
            prepare: Callable[[], None] | None = None, cwd: Path | None = None) -> dict[str, Measurement]:
    """Best wall time and peak memory of each named command over `repeats` timed runs.

    Every command first runs once untimed (warm page cache, the same for all). The timed runs go
    round-robin over the commands, so that a burst of load on a shared machine hits all of them
    alike rather than one. `prepare` runs before every run, untimed (e.g. to empty the output
    folder). A command that fails is not run again; its Measurement holds the error.
    """
    results = {name: Measurement() for name in commands}
    for i in range(repeats + 1):
        for name, cmd in commands.items():
            m = results[name]
            if m.error:
                continue
            if prepare:
                prepare()
            wall, rss, code, tail = run_once(cmd, cwd)
            if code != 0:
                m.error = f"exit {code}: {tail}"[:200]
            elif i > 0:
                m.times_s.append(wall)
                m.peak_rss_mb = max(m.peak_rss_mb or 0.0, rss)
                m.best_s = min(m.times_s)
    return results


def fresh_dir(path: Path) -> Callable[[], None]:
    """A `prepare` callback that empties and recreates `path`."""
    def prepare() -> None:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    return prepare


def row(bench: str, case: str, ours: float | None, anchor: str, anchor_value: float | None,
        target: str = "", unit: str = "s", note: str = "") -> dict:
    """One result row; ratio = ours / anchor, ok = whether the ratio meets `target` ("<= x")."""
    ratio = ours / anchor_value if ours is not None and anchor_value else None
    ok = None
    if ratio is not None and target:
        op, limit = target.split()
        ok = ratio <= float(limit) if op == "<=" else ratio >= float(limit)
    return {"bench": bench, "case": case, "ours_s": ours, "anchor": anchor, "anchor_s": anchor_value,
            "ratio": ratio, "target": target, "ok": ok, "unit": unit, "note": note}
