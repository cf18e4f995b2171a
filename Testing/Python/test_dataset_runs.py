"""Dataset runs on the built-in pool and on a real Dask cluster (started here), and the faults they survive:
a worker killed while it holds a case, the driver killed mid-run (SIGKILL) and run again, an
unreachable scheduler, an input that one worker cannot see."""
from __future__ import annotations

import contextlib
import csv
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from MedPrepLib.cli.main import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from proctree import descendants  # noqa: E402

AFFINE = np.diag([-2.0, -2.0, 3.0, 1.0])
PIPELINE = {"name": "t", "steps": [{"step": "orient", "axcodes": "RAS"},
                                   {"step": "resample", "spacing": [1.0, 1.0, 1.0]},
                                   {"step": "nnunet_ct"}, {"step": "dataset_zscore"}]}
CASES = 10
WORKTREE = Path(__file__).resolve().parents[2]


def make_dataset(root: Path, n: int = CASES) -> Path:
    for i in range(n):
        rng = np.random.default_rng(i)
        arr = rng.normal(40 * i, 50, (12, 24, 20)).astype(np.int16)
        lab = np.zeros(arr.shape, np.uint8)
        lab[3:8, 6:16, 5:12] = 1 + i % 2
        for sub, data in (("images", arr), ("labels", lab)):
            (root / sub).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(data.T, AFFINE), str(root / sub / f"c{i:02d}.nii.gz"))
    (root.parent / "p.json").write_text(json.dumps(PIPELINE))
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("runs") / "in")


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory) -> Path:
    """The uninterrupted run on the built-in pool that every other run must equal."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert main(["run", str(dataset.parent / "p.json"), str(dataset), str(out), "--workers", "2"]) == 0
    return out


def contents(out: Path) -> dict:
    """Every output file's content (NIfTI decompressed: the gzip header holds the time of writing)."""
    found = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name != "manifest.csv":
            data = p.read_bytes()
            found[str(p.relative_to(out))] = gzip.decompress(data) if p.name.endswith(".gz") else data
    return found


def rows(out: Path) -> list:
    with open(out / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def assert_complete(out: Path, reference: Path) -> None:
    """Every case written once, no partial or temporary file anywhere, outputs equal the reference's."""
    assert contents(out) == contents(reference)
    manifest = rows(out)
    assert sorted(r["case"] for r in manifest) == [f"c{i:02d}" for i in range(CASES)]
    assert all(r["status"] in ("written", "unchanged") for r in manifest)
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]


def medprep(*args: str) -> list:
    return [sys.executable, "-m", "MedPrepLib.cli.main", *args]


def medprep_late_journal(*args: str) -> list:
    """`medprep` whose journal records come late (see late_journal.py): a run to kill midway."""
    return [sys.executable, str(Path(__file__).with_name("late_journal.py")), *args]


def env() -> dict:
    return dict(os.environ, PYTHONPATH=str(WORKTREE) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_driver_mid_run(command: list, out: Path, own_workers: bool = True, journaled: int = 1) -> int:
    """Start `command`, SIGKILL it once `journaled` cases are in its manifest; returns how many
    cases the manifest shows finished. The worker processes it started must end with it (those of
    a cluster it joined stay, as they should)."""
    proc = subprocess.Popen(command, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    workers: list = []
    while time.monotonic() < deadline and proc.poll() is None:
        workers = descendants(proc.pid) or workers
        if (out / "manifest.csv").is_file() and len(rows(out)) >= journaled and (workers or not own_workers):
            break
        time.sleep(0.05)
    workers = descendants(proc.pid) or workers
    assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(p) for p in workers):
        time.sleep(0.1)
    if own_workers:
        assert workers and not [p for p in workers if alive(p)], "worker processes outlived their driver"
    finished = {r["case"] for r in rows(out) if r["status"] == "written"}
    assert 0 < len(finished) < CASES
    return len(finished)


def rerun_counts(capsys, *args: str) -> tuple:
    capsys.readouterr()
    assert main(list(args)) == 0
    line = [s for s in capsys.readouterr().out.splitlines() if " cases: " in s][0]
    written, unchanged = (int(line.split(" written")[0].split()[-1]), int(line.split(" unchanged")[0].split()[-1]))
    return written, unchanged


# ---------------------------------------------------------------- the built-in pool

def test_builtin_pool_a_killed_worker_case_runs_again(dataset, reference, tmp_path):
    from MedPrepLib.executor.local import LocalPool
    from MedPrepLib.preprocess import load_pipeline
    from MedPrepLib.cases import PRELOAD
    from MedPrepLib.runner import run_dataset

    out = tmp_path / "out"
    killed = []

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "cases" and done == 1:  # both workers are busy with cases or about to be: kill both
            for pid in pool.worker_pids().values():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    with LocalPool(2, preload=PRELOAD) as pool:
        report = run_dataset(load_pipeline(str(dataset.parent / "p.json")), dataset, out, progress=progress,
                             executor=pool)
    assert len(killed) == 2 and report.retried and not report.failed
    assert len(report.written) == CASES and sum(report.workers.values()) == CASES
    assert_complete(out, reference)


def test_builtin_pool_a_case_that_kills_its_worker_every_time_is_reported(tmp_path):
    from MedPrepLib.executor.local import LocalPool

    with LocalPool(2, retries=1) as pool:
        outcomes = list(pool.map(os._exit, [(3,), (4,)]))
    assert len(outcomes) == 2
    assert all(o.attempts == 2 and "died every time" in o.error for o in outcomes)


def test_builtin_pool_driver_killed_then_run_again_redoes_only_the_rest(dataset, reference, tmp_path, capsys):
    out = tmp_path / "out"
    command = ["run", str(dataset.parent / "p.json"), str(dataset), str(out), "--workers", "2"]
    finished = kill_driver_mid_run(medprep_late_journal(*command), out)
    written, unchanged = rerun_counts(capsys, *command)
    assert (written, unchanged) == (CASES - finished, finished)
    assert_complete(out, reference)


def test_driver_killed_in_the_statistics_pass_then_run_again_computes_only_the_missing_summaries(
        dataset, reference, tmp_path, capsys):
    """The summaries journaled before the kill are taken as they are; the merged statistics, statistics.json
    and every output equal an uninterrupted run's, and the journal is gone."""
    from MedPrepLib.statistics_journal import JOURNAL_NAME

    out = tmp_path / "out"
    command = ["run", str(dataset.parent / "p.json"), str(dataset), str(out), "--workers", "2"]
    journal = out / JOURNAL_NAME

    def journaled() -> int:
        return journal.read_text().count("\n") if journal.is_file() else 0

    proc = subprocess.Popen(medprep_late_journal(*command), env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and journaled() < 2:
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    summaries = 2 * CASES  # two statistics steps, every case a training case
    before = journaled()
    assert not (out / "statistics.json").exists() and 2 <= before < summaries
    capsys.readouterr()
    assert main(command) == 0
    note = f"statistics pass: {before} case summaries taken from an interrupted run, {summaries - before} computed"
    assert note in capsys.readouterr().err
    assert not journal.exists()
    assert_complete(out, reference)  # statistics.json included, byte for byte


def test_every_training_case_failing_in_the_statistics_pass_is_one_line_with_the_first_reason(tmp_path, capsys):
    images = tmp_path / "in" / "images"
    images.mkdir(parents=True)
    for i in range(2):
        (images / f"c{i}.nii.gz").write_bytes(b"not a NIfTI file")
    (tmp_path / "p.json").write_text(json.dumps(PIPELINE))
    assert main(["run", str(tmp_path / "p.json"), str(tmp_path / "in"), str(tmp_path / "out"), "--workers", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "step 'nnunet_ct' needs dataset statistics but every training case failed (the " \
        "first, c0: " in err[0], err


def mark_started(folder: Path, i: int) -> int:
    (folder / str(i)).touch()
    return i


def test_builtin_pool_an_idle_worker_gets_its_next_job_before_the_caller_takes_a_result(tmp_path):
    """The caller may spend a while on each result (journaling a case waits for the disk): the worker
    that sent it is already on its next job meanwhile."""
    from MedPrepLib.executor.local import LocalPool

    with LocalPool(2) as pool:
        outcomes = pool.map(mark_started, [(tmp_path, i) for i in range(4)])
        first = next(outcomes)
        deadline = time.monotonic() + 30
        while len(list(tmp_path.iterdir())) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        started = len(list(tmp_path.iterdir()))
        rest = list(outcomes)
    assert started >= 3, "the next job waited for the caller"
    assert sorted([first.index] + [o.index for o in rest]) == [0, 1, 2, 3]
    assert all(o.value == o.index and not o.error for o in [first] + rest)


class _SeenLate:
    """A worker's pipe and process as the driver may see them just after a SIGKILL: not yet closed,
    still alive, for one look each."""

    def __init__(self, real, method: str, answer: bool):
        self._real, self._method, self._answer, self._looked = real, method, answer, False

    def __getattr__(self, name: str):
        if name == self._method and not self._looked:
            self._looked = True
            return lambda *a, **k: self._answer
        return getattr(self._real, name)


def test_builtin_pool_two_workers_killed_at_once_lose_no_job():
    """Both workers die holding jobs; the death of the second is seen a moment after the first's (its
    process not yet reaped). Its job must still run again: a fresh worker once took its slot and the
    job was lost, the run waiting for it forever."""
    import threading

    from MedPrepLib.executor.local import LocalPool

    outcomes: list = []

    def consume(pool) -> None:
        for outcome in pool.map(time.sleep, [(0.3,)] * 4):
            if not outcomes:  # both workers hold their next jobs: kill them
                workers = [w for w in pool._slots if w is not None]
                for w in workers:
                    os.kill(w.process.pid, signal.SIGKILL)
                for w in workers:
                    w.process.join(10)
                late = workers[-1]
                late.conn = _SeenLate(late.conn, "poll", False)
                late.process = _SeenLate(late.process, "is_alive", True)
            outcomes.append(outcome)

    with LocalPool(2) as pool:
        runner = threading.Thread(target=consume, args=(pool,), daemon=True)
        runner.start()
        runner.join(30)
        assert not runner.is_alive(), "a job was lost: the run waits for it forever"
    assert sorted(o.index for o in outcomes) == [0, 1, 2, 3] and not [o for o in outcomes if o.error]


def test_builtin_pool_runs_light_jobs_only_here_while_workers_start():
    """Light jobs (header reading, de-identifying files) may run in the calling process while the
    workers start; other jobs never do (a case's volume in the driver would add to the run's memory).
    The results are the same whoever runs them."""
    from MedPrepLib.executor.local import LocalPool

    with LocalPool(2) as pool:
        heavy = list(pool.map(os.getpid, [()] * 6))
    with LocalPool(2) as pool:
        light = list(pool.map(abs, [(-i,) for i in range(40)], light=True))
    assert all(o.worker.startswith("worker ") and o.value != os.getpid() for o in heavy)
    assert sorted((o.index, o.value) for o in light) == [(i, i) for i in range(40)]
    assert {o.worker for o in light} <= {"this process", "worker 1", "worker 2"}


def test_a_run_in_this_process_leaves_its_thread_settings_as_they_were(tmp_path):
    """With 1 worker the cases run in the calling process (Slicer, a notebook): the ITK and gzip thread
    counts each case sets for itself are given back when the run ends."""
    import SimpleITK as sitk

    from MedPrepLib import nifti
    from MedPrepLib.preprocess import load_pipeline
    from MedPrepLib.runner import run_dataset

    data = make_dataset(tmp_path / "in", 2)
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(), nifti.gzip_threads()
    try:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(7)
        nifti.set_gzip_threads(5)
        report = run_dataset(load_pipeline(str(tmp_path / "p.json")), data, tmp_path / "out", workers=1)
        assert len(report.written) == 2 and report.workers == {"this process": 2}
        assert (sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(), nifti.gzip_threads()) == (7, 5)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before[0])
        nifti.set_gzip_threads(before[1])


# ---------------------------------------------------------------- Dask

try:
    import distributed
except ImportError:  # the compat environment may lack it
    distributed = None
needs_dask = pytest.mark.skipif(distributed is None, reason="Dask is not installed (pip install 'medpreplib[dask]')")


@pytest.fixture(scope="module")
def cluster():
    import logging

    if distributed is None:
        pytest.skip("Dask is not installed (pip install 'medpreplib[dask]')")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as local:
        with distributed.Client(local, set_as_default=False) as client:
            yield local.scheduler_address, client


@contextlib.contextmanager
def killing_a_busy_dask_worker(client, job: str, flag: Path):
    """While the block runs, the first worker to start a job named `job` SIGKILLs itself as the job
    starts executing; yields a list that holds that worker's pid once the block ends ([] if none did).

    A worker plugin does it, from the worker's own transition to "executing", and `flag` (created
    exclusively) makes it one worker once, the restarted one included. Watching from the test missed
    short jobs: asked from outside, a worker could finish its job in between and die holding only the
    result (recomputed without a death counted), and polled, a loaded CI machine once went through a
    whole pass of small cases unseen."""
    class KillOnStart(distributed.WorkerPlugin):  # defined here: cloudpickle sends the class by value
        name = "medprep-test-kill-on-start"

        def __init__(self, job: str, flag: str):
            self.job, self.flag = job, flag

        def transition(self, key, start, finish, **kwargs) -> None:
            import os
            import signal

            if finish != "executing" or self.job not in str(key):
                return
            try:
                fd = os.open(self.flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)

    killed: list = []
    client.register_plugin(KillOnStart(job, str(flag)))
    try:
        yield killed
    finally:
        client.unregister_worker_plugin(KillOnStart.name)
        if flag.is_file():
            killed.append(int(flag.read_text()))


def test_dask_outputs_and_statistics_equal_the_builtin_pool(dataset, reference, cluster, tmp_path, capsys):
    address, client = cluster
    out = tmp_path / "out"
    shared = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    assert main(["run", str(dataset.parent / "p.json"), str(dataset), str(out), "--scheduler", address,
                 "--retries", str(shared + 4)]) == 0
    # The run's retries were the scheduler's for the run only: a shared scheduler gets its own value back.
    assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures) == shared
    summary = capsys.readouterr().out
    assert "per worker: tcp://" in summary
    assert json.loads((out / "statistics.json").read_text()) == json.loads((reference / "statistics.json")
                                                                            .read_text())
    assert [(r["case"], r["fingerprint"]) for r in rows(out)] == [(r["case"], r["fingerprint"])
                                                                  for r in rows(reference)]
    assert_complete(out, reference)


def test_dask_a_killed_worker_case_runs_again(dataset, reference, cluster, tmp_path):
    """Every case written once, none left half-written, the retry in the summary."""
    from MedPrepLib.executor.dask_pool import DaskPool
    from MedPrepLib.preprocess import load_pipeline
    from MedPrepLib.runner import run_dataset

    address, client = cluster
    out = tmp_path / "out"

    # Cases at a finer grid than the reference's (8x the voxels): a case the worker dies in does work.
    pipeline = load_pipeline(str(dataset.parent / "p.json"), ["resample.spacing=[0.5,0.5,0.5]"])
    with DaskPool(address=address) as pool, \
            killing_a_busy_dask_worker(client, "case_job", tmp_path / "killed") as killed:
        report = run_dataset(pipeline, dataset, out, executor=pool)
    assert killed and report.retried and not report.failed, report
    assert len(report.written) == CASES
    manifest = rows(out)
    assert sorted(r["case"] for r in manifest) == [f"c{i:02d}" for i in range(CASES)]
    assert all(r["status"] == "written" for r in manifest)
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(
        p.name for p in (reference / "images").iterdir())
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]
    client.wait_for_workers(2, timeout=120)  # the nannies restart them, for the tests after this one


def test_dask_a_worker_dead_with_results_not_yet_gathered_counts_their_jobs_as_run_again(cluster):
    """A worker that dies holding finished results the driver has not taken yet: the scheduler computes
    them again, without counting a death under them. Those jobs did run twice, and say so."""
    from MedPrepLib.executor.dask_pool import DaskPool

    address, client = cluster

    def holding(dask_worker=None) -> list:  # nested: cloudpickle sends its code
        return [str(k) for k in dask_worker.data if "medprep-sleep" in str(k)]

    client.wait_for_workers(2, timeout=120)
    with DaskPool(address=address) as pool:
        outcomes = pool.map(time.sleep, [(0,)] + [(0.3,)] * 5)
        first = [next(outcomes)]  # the other jobs finish meanwhile, their results left on the workers
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            held = {w: keys for w, keys in client.run(holding).items() if keys}
            if sum(len(keys) for keys in held.values()) == 5:
                break
            time.sleep(0.05)
        victim, lost = max(held.items(), key=lambda item: len(item[1]))
        os.kill(client.run(os.getpid, workers=[victim])[victim], signal.SIGKILL)
        rest = list(outcomes)
    lost_jobs = {int(key.rsplit("-", 1)[1]) for key in lost}
    assert sorted(o.index for o in first + rest) == list(range(6)) and not [o for o in rest if o.error]
    assert {o.index: o.attempts for o in rest} == {i: 2 if i in lost_jobs else 1 for i in range(1, 6)}, (
        lost_jobs, rest)
    client.wait_for_workers(2, timeout=120)


def test_dask_driver_killed_then_run_again_redoes_only_the_rest(dataset, reference, cluster, tmp_path, capsys):
    """Killed with its own LocalCluster (whose workers must end with it), taken up again on the
    running cluster: where the cases ran is no part of what they are."""
    address, _ = cluster
    out = tmp_path / "out"
    command = ["run", str(dataset.parent / "p.json"), str(dataset), str(out)]
    finished = kill_driver_mid_run(medprep_late_journal(*command, "--cluster", "local:2"), out)
    written, unchanged = rerun_counts(capsys, *command, "--scheduler", address)
    assert (written, unchanged) == (CASES - finished, finished)
    assert_complete(out, reference)


@needs_dask
def test_an_unreachable_scheduler_is_one_clear_line(dataset, tmp_path, capsys, monkeypatch):
    import MedPrepLib.executor.dask_pool as dask_pool

    monkeypatch.setattr(dask_pool, "CONNECT_TIMEOUT", 2)
    assert main(["run", str(dataset.parent / "p.json"), str(dataset), str(tmp_path / "out"),
                 "--scheduler", "tcp://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err[0], err


@needs_dask
def test_an_input_one_worker_cannot_see_stops_the_run_naming_it(dataset, tmp_path, capsys):
    """One worker runs in a mount namespace where the input folder is an empty tmpfs, as on a node
    that lacks the shared mount: the probe names that worker and the path, and nothing runs."""
    import logging

    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare -m (root) to give one worker its own view of the file system")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as local:
        script = (f"mount -t tmpfs tmpfs {dataset / 'images'} && exec {sys.executable} -m distributed.cli.dask_worker "
                  f"{local.scheduler_address} --nthreads 1 --no-nanny --no-dashboard")
        blind = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script], env=env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with distributed.Client(local, set_as_default=False) as client:
                client.wait_for_workers(2, timeout=60)
                names = {w["name"]: a for a, w in client.scheduler_info()["workers"].items()}
            out = tmp_path / "out"
            capsys.readouterr()
            assert main(["run", str(dataset.parent / "p.json"), str(dataset), str(out),
                         "--scheduler", local.scheduler_address]) == 1
            err = capsys.readouterr().err.strip().splitlines()
            blind_address = [a for n, a in names.items() if not isinstance(n, int)]
            assert len(err) == 1 and f"Dask worker {blind_address[0]} cannot see" in err[0], err
            assert str(dataset / "images" / "c00.nii.gz") in err[0]
            assert not (out / "manifest.csv").exists()
        finally:
            blind.kill()
            blind.wait()


def without(folder: Path, *packages: str) -> str:
    """A folder for PYTHONPATH whose sitecustomize makes `packages` unimportable: an environment in
    which they are not installed."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import sys\n"
        "class Missing:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.partition('.')[0] in {packages!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Missing())\n")
    return str(folder)


@pytest.mark.parametrize("where", [["run", "--cluster", "local:2"], ["run", "--scheduler", "tcp://127.0.0.1:9"],
                                   ["anonymize", "--cluster", "local"]])
def test_dask_flags_without_dask_installed_are_one_line_naming_the_extra(dataset, tmp_path, where):
    command, flags = where[0], where[1:]
    out = tmp_path / "out"
    paths = [str(dataset.parent / "p.json")] if command == "run" else []
    paths += [str(dataset), str(out)] + (["--key", "k"] if command == "anonymize" else [])
    environment = dict(env(), PYTHONPATH=without(tmp_path / "site", "dask", "distributed") + os.pathsep +
                       env()["PYTHONPATH"])
    done = subprocess.run(medprep(command, *paths, *flags), env=environment, capture_output=True, text=True,
                          timeout=60)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(err) == 1, done.stderr
    assert "need Dask, which is not installed" in err[0] and 'pip install "medpreplib[dask]"' in err[0]
    assert not out.exists()


def older_medpreplib(folder: Path) -> str:
    """A folder for PYTHONPATH with a MedPrepLib that says it is version 0.0.1 (its modules are this one's)."""
    (folder / "MedPrepLib").mkdir(parents=True, exist_ok=True)
    (folder / "MedPrepLib" / "__init__.py").write_text(
        f"__version__ = '0.0.1'\n__path__.append({str(WORKTREE / 'MedPrepLib')!r})\n")
    return str(folder)


@needs_dask
@pytest.mark.parametrize("missing", ["MedPrepLib", "SimpleITK", "0.0.1"])
def test_a_worker_missing_medpreplib_or_a_dependency_stops_the_run_naming_it(dataset, tmp_path, capsys, missing):
    """A `dask worker` started in an environment without MedPrepLib, without a package its jobs import,
    or with another version of MedPrepLib: the probe names that worker and what it lacks before
    anything runs."""
    import logging

    from MedPrepLib import __version__

    site = older_medpreplib(tmp_path / "site") if missing == "0.0.1" else without(tmp_path / "site", missing)
    with distributed.LocalCluster(n_workers=0, dashboard_address=None, silence_logs=logging.ERROR) as local:
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", local.scheduler_address,
                                   "--nthreads", "1", "--no-nanny", "--no-dashboard"],
                                  env=dict(env(), PYTHONPATH=site + os.pathsep + env()["PYTHONPATH"]),
                                  cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with distributed.Client(local, set_as_default=False) as client:
                client.wait_for_workers(1, timeout=60)
                address = list(client.scheduler_info()["workers"])[0]
            out = tmp_path / "out"
            capsys.readouterr()
            assert main(["run", str(dataset.parent / "p.json"), str(dataset), str(out),
                         "--scheduler", local.scheduler_address]) == 1
            err = capsys.readouterr().err.strip().splitlines()
            expected = (f"Dask worker {address} has MedPrepLib 0.0.1, this machine {__version__}" if missing == "0.0.1"
                        else f"Dask worker {address} cannot import {missing} (No module named")
            assert len(err) == 1 and expected in err[0], err
            assert f'pip install "medpreplib[dask]=={__version__}"' in err[0]
            assert not out.exists()
        finally:
            worker.kill()
            worker.wait()


@needs_dask
def test_dask_a_worker_that_joins_during_the_run_is_checked_before_its_first_job(tmp_path):
    """An adaptive cluster adds workers while a run goes on: one from the same environment takes
    jobs; one without MedPrepLib stops the run with one line naming it, rather than failing its jobs."""
    import logging

    from MedPrepLib.errors import MedPrepError
    from MedPrepLib.executor.dask_pool import DaskPool

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as local, \
            DaskPool(address=local.scheduler_address) as pool:
        pool.probe([("read", str(tmp_path)), ("write", str(tmp_path))])
        local.scale(2)
        pool.client.wait_for_workers(2, timeout=60)
        assert len({o.worker for o in pool.map(time.sleep, [(0.2,)] * 8)}) == 2
        late = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", local.scheduler_address,
                                 "--nthreads", "1", "--no-nanny", "--no-dashboard"],
                                env=dict(env(), PYTHONPATH=without(tmp_path / "site", "MedPrepLib") + os.pathsep +
                                         env()["PYTHONPATH"]),
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            known = set(pool.client.scheduler_info()["workers"])
            pool.client.wait_for_workers(3, timeout=60)
            address = (set(pool.client.scheduler_info()["workers"]) - known).pop()
            with pytest.raises(MedPrepError) as refused:
                list(pool.map(time.sleep, [(0.2,)] * 12))
            assert (f"Dask worker {address}, which joined the cluster after the run started, cannot import "
                    "MedPrepLib (No module named") in refused.value.one_line()
        finally:
            late.kill()
            late.wait()


# ---------------------------------------------------------------- anonymize

@pytest.fixture(scope="module")
def dicom_tree(tmp_path_factory) -> Path:
    from MedPrepSample import write_ct_series

    root = tmp_path_factory.mktemp("dicom")
    for i in range(4):
        write_ct_series(root / f"PAT{i}" / "ct", n_slices=40, rows=32, cols=32, spacing=(2, 2, 3), seed=i,
                        series_uid=f"1.2.826.0.1.3680043.8.498.7{i + 1}")
    return root


@pytest.fixture(scope="module")
def anonymized(dicom_tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("anon") / "out"
    assert main(["anonymize", str(dicom_tree), str(out), "--key", "k", "-j", "1"]) == 0
    return out


def files(out: Path) -> dict:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


@pytest.mark.parametrize("engine", ["builtin", "dask"])
def test_anonymize_a_killed_worker_batch_runs_again(dicom_tree, anonymized, tmp_path, engine, request):
    from MedPrepLib.anonymize import AnonymizeOptions, Anonymizer, anonymize_tree
    from MedPrepLib.executor.local import LocalPool

    progress = None
    if engine == "dask":
        from MedPrepLib.executor.dask_pool import DaskPool

        address, client = request.getfixturevalue("cluster")
        pool = DaskPool(address=address)
        watch = killing_a_busy_dask_worker(client, "_run_span", tmp_path / "killed")
    else:
        pool = LocalPool(2, preload=["MedPrepLib.anonymize.tree"])
        watch = contextlib.nullcontext([])

        def progress(done: int, total: int) -> None:
            # Only a worker holding a batch: on a loaded machine this process runs the first batches
            # while the workers start, and an idle worker killed then leaves nothing to run again.
            if not killed:
                for w in [w for w in pool._slots if w is not None and w.job is not None]:
                    os.kill(w.process.pid, signal.SIGKILL)
                    killed.append(w.process.pid)

    with pool, watch as killed:
        report = anonymize_tree(dicom_tree, tmp_path / "out", Anonymizer(b"k", AnonymizeOptions()), progress, pool)
    assert killed and report.retried and report.written == 160 and not report.unreadable
    assert files(tmp_path / "out") == files(anonymized)
    if engine == "dask":
        client.wait_for_workers(2, timeout=120)


@pytest.mark.parametrize("engine", ["builtin", "dask"])
def test_anonymize_driver_killed_then_run_again_redoes_only_the_rest(dicom_tree, anonymized, tmp_path, capsys,
                                                                     engine, request):
    where = ["-j", "2"] if engine == "builtin" else ["--scheduler", request.getfixturevalue("cluster")[0]]
    out = tmp_path / "out"
    command = ["anonymize", str(dicom_tree), str(out), "--key", "k", *where]
    proc = subprocess.Popen(medprep(*command), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    journal: list = []
    workers: list = []
    while time.monotonic() < deadline and proc.poll() is None and not (journal and (workers or engine == "dask")):
        workers = descendants(proc.pid) or workers
        journal = [p for p in out.glob(".medprep-staging-*/journal.jsonl") if p.stat().st_size]
        time.sleep(0.05)
    assert proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(p) for p in workers):
        time.sleep(0.1)
    if engine == "builtin":  # a cluster's workers stay, as they should
        assert workers and not [p for p in workers if alive(p)], "worker processes outlived their driver"
    done_before = sum(len(json.loads(line)["done"]) for line in journal[0].read_text().splitlines())
    assert 0 < done_before < 160
    capsys.readouterr()
    assert main(command) == 0
    assert f"{done_before} files were done by an earlier, interrupted run" in capsys.readouterr().err
    assert files(out) == files(anonymized)
