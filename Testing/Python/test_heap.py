"""glibc's heap thresholds while jobs run on workers whose environment pinned them (Dask's nanny sets
MALLOC_TRIM_THRESHOLD_ on every worker): what `executor.heap.roomy_heap` changes, and puts back.

Whether a 1 MiB block is mapped on its own (mmap) or taken from the heap is read from glibc's
`mallinfo2().hblks`, the number of blocks mapped on their own."""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

WORKTREE = Path(__file__).resolve().parents[2]


def _glibc_with_mallinfo2() -> bool:
    try:
        ctypes.CDLL(None).mallinfo2  # noqa: B018 - glibc 2.33 or later
        return True
    except (OSError, AttributeError):
        return False


pytestmark = pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="needs glibc 2.33+ (mallinfo2) to watch the heap")

# Runs in a fresh interpreter (or on a Dask worker): how many of five 1 MiB blocks were mapped on
# their own, the fewest over five tries (another thread's allocations can only add).
MAPPED = textwrap.dedent("""
    def mapped():
        import ctypes

        class Info(ctypes.Structure):  # made here: a job sent by value carries no ctypes class
            _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = Info
        counts = []
        for _ in range(5):
            blocks = []
            before = libc.mallinfo2().hblks
            for _ in range(5):
                blocks.append(bytearray(1 << 20))
            counts.append(libc.mallinfo2().hblks - before)
            del blocks
        return min(counts)
""")


def _run(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    environ.update(env, PYTHONPATH=str(WORKTREE))
    done = subprocess.run([sys.executable, "-c", MAPPED + textwrap.dedent(code)], env=environ,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_job_gets_a_roomy_heap_where_the_environment_pinned_the_thresholds_and_gives_it_back():
    outside, inside, after = _run("""
        from MedPrepLib.executor.heap import roomy_heap
        print(mapped())
        with roomy_heap():
            print(mapped())
        print(mapped())
    """, MALLOC_TRIM_THRESHOLD_="65536")
    assert (outside, inside, after) == ("5", "0", "5")


def test_nested_and_overlapping_jobs_put_the_thresholds_back_once_the_last_one_ends():
    """A Dask worker with several threads runs jobs side by side: the first to end must not take
    the roomy heap from the others."""
    inner, still, after = _run("""
        from MedPrepLib.executor.heap import roomy_heap
        first, second = roomy_heap(), roomy_heap()
        first.__enter__()
        second.__enter__()
        print(mapped())
        first.__exit__(None, None, None)
        print(mapped())
        second.__exit__(None, None, None)
        print(mapped())
    """, MALLOC_MMAP_THRESHOLD_="131072")
    assert (inner, still, after) == ("0", "0", "5")


def test_where_glibc_adjusts_its_thresholds_itself_nothing_is_changed():
    """Without the variables glibc raises its threshold as blocks are freed; calling mallopt at all
    would switch that off for good, so roomy_heap must not."""
    counts = _run("""
        from MedPrepLib.executor.heap import pinned, roomy_heap
        assert pinned() is None
        with roomy_heap():
            pass
        print(mapped())  # the first try's blocks are mapped, and freeing them raises the threshold
    """)
    assert counts == ["0"]  # so the later tries' blocks come from the heap, as glibc does by itself


def test_the_builtin_pool_runs_its_jobs_with_a_roomy_heap(tmp_path):
    """A run started with MALLOC_TRIM_THRESHOLD_ set (a batch job, a container) gives its workers'
    jobs the heap glibc would have had."""
    (tmp_path / "jobs.py").write_text(MAPPED)
    counts = _run(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from jobs import mapped as job
        from MedPrepLib.executor.local import LocalPool
        with LocalPool(2) as pool:
            print(*sorted(o.value for o in pool.map(job, [()] * 4)))
    """, MALLOC_TRIM_THRESHOLD_="65536")
    assert counts == ["0"] * 4


try:
    import distributed
except ImportError:  # the compat environment may lack it
    distributed = None


@pytest.mark.skipif(distributed is None, reason="Dask is not installed (pip install 'medpreplib[dask]')")
def test_a_dask_job_gets_a_roomy_heap_and_its_worker_gets_its_thresholds_back():
    import logging

    import cloudpickle

    from MedPrepLib import __version__
    from MedPrepLib.executor.dask_pool import _by_value, _checked_call

    namespace: dict = {"__name__": "medprep_heap_probe"}  # no such module: cloudpickle sends the code
    exec(MAPPED, namespace)
    mapped = namespace["mapped"]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster:
        with distributed.Client(cluster, set_as_default=False) as client:
            pinned = list(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values())[0]
            if pinned is None:
                pytest.skip("this Dask version's nanny does not set MALLOC_TRIM_THRESHOLD_")
            assert list(client.run(mapped).values()) == [5]  # the nanny's setting, before any job
            job = cloudpickle.dumps((mapped, ()))
            future = client.submit(_by_value(_checked_call), job, run="r", modules=[], version=__version__,
                                   checks=[], pure=False)
            _, unready, value = future.result(timeout=60)
            assert unready == ("", "") and value == 0
            assert list(client.run(mapped).values()) == [5]  # and after it
