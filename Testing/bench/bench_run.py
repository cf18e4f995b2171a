"""`medprep run` over a dataset: throughput with 2 workers against 1, and memory of the whole run;
a DICOM tree with 1 and 2 workers; Dask against the built-in pool.

Issue targets: 2 workers at least 1.7x the throughput of 1 (NIfTI) and 1.6x (a DICOM tree of 8
series); peak memory with 2 workers (all processes of the run together) at most 3x one case's
volume size; a Dask LocalCluster of 2 workers at most 1.15x the built-in pool's wall time.
Memory is the peak of the summed PSS (proportional set size) of the process tree, sampled every
20 ms: the RAM the run occupies.
Summed RSS is reported beside it; it counts the shared library code (SimpleITK alone maps about
90 MB) once per process.
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
from MedPrepSample import ct_phantom
from MedPrepLib.volume import Volume
from proctree import descendants
from timing import row, tool


def _memory_mb(pid: int) -> tuple:
    """(PSS, RSS) of one process in MB. PSS splits each shared page among the processes that map it,
    so the PSS of a tree adds up to the memory the tree really uses; RSS counts shared library code
    once per process."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss / 1024, rss / 1024


def timed(cmd: list) -> tuple:
    """(wall seconds, CPU seconds) of a command, with nothing else running in this process meanwhile.

    The CPU time is the command's own process with all its threads (and the children it waited for;
    not the fork server's workers, which it does not wait for): for a 1-worker run, all its work.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:3])} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def peak_memory(cmd: list) -> tuple:
    """(peak summed PSS, peak summed RSS) in MB of a command and every process it starts.

    Sampling walks /proc and every process's page tables every 20 ms, a load of its own: it runs
    in separate runs from the timed ones, so that it slows no timing.
    """
    peak = [0.0, 0.0]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def sample() -> None:
        while proc.poll() is None:
            sizes = [_memory_mb(pid) for pid in [proc.pid, *descendants(proc.pid)]]
            peak[0] = max(peak[0], sum(s[0] for s in sizes))
            peak[1] = max(peak[1], sum(s[1] for s in sizes))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    code = proc.wait()
    sampler.join()
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[1:3])} exited {code}")
    return peak[0], peak[1]


def _dataset(folder: Path, n_cases: int, n_slices: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_cases):
        target = folder / f"case{i:02d}.nii.gz"
        if target.exists():
            continue
        hu = ct_phantom(n_slices=n_slices, rows=512, cols=512, spacing=(0.7, 0.7, 1.0), seed=i)
        write_nifti(Volume(array=hu, affine=np.diag([-0.7, -0.7, 1.0, 1.0])), target)


def _dicom_tree(folder: Path, n_series: int, n_slices: int) -> None:
    from MedPrepSample import write_ct_series

    for i in range(n_series):
        series = folder / f"series{i}"
        if not series.is_dir():
            write_ct_series(series, n_slices=n_slices, seed=i, series_uid=f"1.2.826.0.1.3680043.8.498.9{i + 1}")


def dicom_rows(workdir: Path, quick: bool) -> list:
    """A DICOM tree (one case per series) scales as NIfTI inputs do: whole-run wall time, 1 vs 2 workers."""
    n_series, n_slices = (4, 60) if quick else (8, 120)
    tree = workdir / f"dicom{n_series}x{n_slices}"
    _dicom_tree(tree, n_series, n_slices)
    medprep, out = tool("medprep"), workdir / "out-dicom"
    wall: dict = {}
    cpu: dict = {}  # workers -> CPU seconds of the best run (all of it for 1 worker, which is one process)
    for _ in range(1 if quick else 3):
        for workers in (1, 2):
            shutil.rmtree(out, ignore_errors=True)
            seconds, cpu_seconds = timed([medprep, "run", "ct-liver", str(tree), str(out), "--workers", str(workers)])
            if seconds < wall.get(workers, float("inf")):
                wall[workers], cpu[workers] = seconds, cpu_seconds
    busy = cpu[1] / wall[1]  # as for NIfTI inputs below: the bound 2 workers meet with 1 worker's CPU time
    return [row("run", f"DICOM tree, {n_series} CT series of {n_slices} slices, ct-liver: throughput, 2 workers vs 1",
                wall[1] / wall[2], "1 worker = 1.0", 1.0, ">= 1.6", unit="x",
                note=f"whole run: 1 worker {wall[1]:.1f} s, 2 workers {wall[2]:.1f} s "
                     f"({n_series * n_slices} files, headers read by the workers); 1 worker keeps {busy:.2f} cores "
                     f"busy, so 2 workers with its CPU time would reach {2 / busy:.2f}x")]


def dask_rows(workdir: Path, data: Path, n_cases: int, quick: bool) -> list:
    """The same run on a Dask LocalCluster of 2 worker processes against the built-in pool of 2.

    The cluster is started once and kept, as a cluster is between runs (`--scheduler`); starting
    one per run (`--cluster local:2`) is timed beside it."""
    try:
        import distributed
    except ImportError:
        return []
    import logging

    medprep, out = tool("medprep"), workdir / "out-dask"
    wall: dict = {}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster:
        engines = {"built-in": ["--workers", "2"], "dask": ["--scheduler", cluster.scheduler_address],
                   "dask-cold": ["--cluster", "local:2"]}
        for _ in range(1 if quick else 3):
            for name, flags in engines.items():
                shutil.rmtree(out, ignore_errors=True)
                seconds, _ = timed([medprep, "run", "ct-liver", str(data), str(out), *flags])
                wall[name] = min(wall.get(name, float("inf")), seconds)
    return [row("run", f"{n_cases} NIfTI cases: Dask LocalCluster (2 workers, running) vs built-in pool (2 workers)",
                wall["dask"], "built-in pool wall time (s)", wall["built-in"], "<= 1.15",
                note=f"built-in {wall['built-in']:.1f} s, Dask {wall['dask']:.1f} s, Dask with a cluster started "
                     f"for the run (--cluster local:2) {wall['dask-cold']:.1f} s")]


def run(workdir: Path, quick: bool) -> list:
    """Throughput is measured as a rate: the time the run takes for 2n cases minus its time for n
    cases, per n cases. What a run costs whatever its size (starting Python and the workers,
    importing SimpleITK, writing the manifest) cancels out, as it does on a real dataset of
    hundreds of cases. The plain wall-time ratio on 2n cases is reported beside it."""
    n, n_slices = (2, 60) if quick else (8, 150)
    big, small = workdir / f"images{2 * n}", workdir / f"images{n}"
    _dataset(big, 2 * n, n_slices)
    small.mkdir(parents=True, exist_ok=True)
    for i in range(n):  # the first n cases of the big set, not a copy
        link = small / f"case{i:02d}.nii.gz"
        if not link.exists():
            link.symlink_to(big / link.name)
    case_mb = 512 * 512 * n_slices * 4 / 2 ** 20  # float32, as the ct-liver preset works
    medprep = tool("medprep")
    wall: dict = {}  # (workers, cases) -> best time
    cpu: dict = {}  # (workers, cases) -> CPU seconds of that best run
    out = workdir / "out"

    def command(data: Path, workers: int) -> list:
        shutil.rmtree(out, ignore_errors=True)
        return [medprep, "run", "ct-liver", str(data), str(out), "--workers", str(workers)]

    for _ in range(1 if quick else 5):  # best of 5: single runs on a shared VM swing by 10 %
        for workers in (1, 2):  # round-robin, so that a burst of load hits both alike
            for cases, data in ((n, small), (2 * n, big)):
                seconds, cpu_seconds = timed(command(data, workers))
                if seconds < wall.get((workers, cases), float("inf")):
                    wall[workers, cases], cpu[workers, cases] = seconds, cpu_seconds
    peak = {workers: peak_memory(command(big, workers)) for workers in (1, 2)}
    rate = {w: n / max(1e-9, wall[w, 2 * n] - wall[w, n]) for w in (1, 2)}
    t1, t2 = wall[1, 2 * n], wall[2, 2 * n]
    # A single worker already runs ITK and gzip on every core. Two workers that spend the same CPU
    # time per case can only add what it leaves idle: (2 cores) / (cores 1 worker keeps busy). They
    # beat that bound only by as much as single-threaded work costs less CPU than threaded work.
    busy = cpu[1, 2 * n] / t1
    (m1, r1), (m2, r2) = peak[1], peak[2]
    case = f"CT 512x512x{n_slices}, ct-liver"
    return dask_rows(workdir, big, 2 * n, quick) + dicom_rows(workdir, quick) + [
        row("run", f"{case}: throughput (cases/s from {n} to {2 * n} cases), 2 workers vs 1", rate[2] / rate[1],
            "1 worker = 1.0", 1.0, ">= 1.7", unit="x",
            note=f"1 worker {rate[1]:.2f} cases/s, 2 workers {rate[2]:.2f} cases/s; 1 worker keeps {busy:.2f} "
                 f"cores busy, so 2 workers with its CPU time per case would reach {2 / busy:.2f}x"),
        row("run", f"{case}: wall time of {2 * n} cases, 1 worker / 2 workers", t1 / t2, "1 worker = 1.0", 1.0,
            unit="x", note=f"1 worker {t1:.1f} s, 2 workers {t2:.1f} s (includes starting up)"),
        row("run", f"{case}: peak memory (PSS of all processes), 2 workers", m2, "one case's volume (MB)", case_mb,
            "<= 3", unit="MB", note=f"1 worker peaked at {m1:.0f} MB; summed RSS (shared code counted per "
                                    f"process): {r2:.0f} MB with 2 workers, {r1:.0f} MB with 1"),
    ]
