"""`medprep run` over a dataset: throughput with 2 workers against 1, and memory of the whole run.

Issue targets: 2 workers at least 1.7x the throughput of 1; peak memory with 2 workers (all
processes of the run together) at most 3x one case's volume size.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from MedPrepLib.nifti import write_nifti
from MedPrepLib.sample import ct_phantom
from MedPrepLib.volume import Volume
from timing import row, tool


def _tree_rss_mb(root_pid: int) -> float:
    """Resident memory of a process and all its descendants, from /proc."""
    children: dict = {}
    rss: dict = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            with open(f"/proc/{entry}/statm") as fh:
                rss[int(entry)] = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total / 2 ** 20


def timed_tree(cmd: list) -> tuple:
    """(wall seconds, peak summed RSS in MB, exit code) of a command and every process it starts."""
    peak = [0.0]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_mb(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    code = proc.wait()
    wall = time.perf_counter() - start
    sampler.join()
    return wall, peak[0], code


def run(workdir: Path, quick: bool) -> list:
    n_cases, n_slices = (4, 60) if quick else (8, 150)
    data = workdir / "images"
    data.mkdir(parents=True)
    for i in range(n_cases):
        hu = ct_phantom(n_slices=n_slices, rows=512, cols=512, spacing=(0.7, 0.7, 1.0), seed=i)
        affine = np.diag([-0.7, -0.7, 1.0, 1.0])
        write_nifti(Volume(array=hu, affine=affine), data / f"case{i:02d}.nii.gz")
    case_mb = 512 * 512 * n_slices * 4 / 2 ** 20  # float32, as the ct-liver preset works
    medprep = tool("medprep")
    results = {}
    for workers in (1, 2):
        best = None
        for _ in range(1 if quick else 2):
            out = workdir / f"out{workers}"
            shutil.rmtree(out, ignore_errors=True)
            wall, peak, code = timed_tree([medprep, "run", "ct-liver", str(data), str(out),
                                           "--workers", str(workers)])
            if code != 0:
                raise RuntimeError(f"medprep run --workers {workers} exited {code}")
            if best is None or wall < best[0]:
                best = (wall, peak)
        results[workers] = best
    (t1, m1), (t2, m2) = results[1], results[2]
    case = f"{n_cases} CT cases 512x512x{n_slices}, ct-liver"
    return [
        row("run", f"{case}: throughput, 2 workers vs 1", t1 / t2, "1 worker = 1.0", 1.0, ">= 1.7", unit="x",
            note=f"1 worker {t1:.1f} s, 2 workers {t2:.1f} s"),
        row("run", f"{case}: peak memory, 2 workers", m2, "one case's volume (MB)", case_mb, "<= 3",
            unit="MB", note=f"1 worker peaked at {m1:.0f} MB"),
    ]
