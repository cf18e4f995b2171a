"""The append-only logs of a dataset run (manifest.csv, the statistics journal): what a killed process
leaves, and how often they are forced to the disk."""
from __future__ import annotations

import threading
import time

import MedPrepLib.appendlog as appendlog
from MedPrepLib.appendlog import AppendLog


def test_every_record_is_in_the_file_as_soon_as_it_is_written(tmp_path):
    path = tmp_path / "log.txt"
    with AppendLog(path) as log:
        assert log.was_empty
        log.write("a\n")
        assert path.read_text() == "a\n"  # another process (a rerun after a kill) would see it now
        log.write("b\n")
        assert path.read_text() == "a\nb\n"
    with AppendLog(path) as log:
        assert not log.was_empty


def test_a_record_cut_short_by_a_crash_does_not_swallow_the_next(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("whole\ncut sh")
    with AppendLog(path) as log:
        log.write("next\n")
    assert path.read_text().splitlines() == ["whole", "cut sh", "next"]


def test_records_are_forced_to_the_disk_once_a_second_and_at_close(tmp_path, monkeypatch):
    clock, synced = [100.0], []
    monkeypatch.setattr(appendlog.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(appendlog.os, "fsync", lambda fd: synced.append(clock[0]))
    with AppendLog(tmp_path / "log.txt") as log:
        for _ in range(50):  # a burst of cases finishing within the same second: no forcing
            log.write("row\n")
            clock[0] += 0.01
        assert synced == []
        clock[0] += 1.0
        log.write("row\n")  # the first record a second after the last forcing forces them all
        _wait_for(lambda: synced)
        assert synced == [clock[0]]
        log.write("row\n")
        assert len(synced) == 1
    assert len(synced) == 2  # closing forces the rest


def _wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.perf_counter() + seconds
    while not condition() and time.perf_counter() < deadline:
        time.sleep(0.005)


def test_the_writer_never_waits_for_the_disk(tmp_path, monkeypatch):
    """The driver of a run writes a manifest row and hands out the next job: a slow fsync (0.1 s on a
    VM's disk) must not hold it, so the log forces in a thread of its own."""
    clock, forcing_threads, disk_answers = [100.0], [], threading.Event()

    def slow_fsync(fd):
        forcing_threads.append(threading.current_thread())
        disk_answers.wait(5)

    monkeypatch.setattr(appendlog.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(appendlog.os, "fsync", slow_fsync)
    path = tmp_path / "log.txt"
    with AppendLog(path) as log:
        clock[0] += 2.0
        log.write("a\n")  # asks for a forcing, which the disk does not answer yet
        log.write("b\n")
        assert path.read_text() == "a\nb\n"
        _wait_for(lambda: forcing_threads)
        disk_answers.set()
    assert forcing_threads[0] is not threading.current_thread()
    assert len(forcing_threads) == 2  # and once more, by the closing writer, after the thread has ended


def test_a_superseded_log_is_forced_at_close_only_after_an_error(tmp_path, monkeypatch):
    """The manifest journal is rewritten and the statistics journal removed as soon as their work ends
    well: forcing them to the disk first held every worker for 0.07-0.09 s on this VM. After an
    error they are what is left of the work, and are forced."""
    synced = []
    monkeypatch.setattr(appendlog.time, "monotonic", lambda: 100.0)  # no forcing by age
    monkeypatch.setattr(appendlog.os, "fsync", lambda fd: synced.append(fd))
    with AppendLog(tmp_path / "a.txt", superseded=True) as log:
        log.write("row\n")
    assert synced == []
    try:
        with AppendLog(tmp_path / "b.txt", superseded=True) as log:
            log.write("row\n")
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert len(synced) == 1
    with AppendLog(tmp_path / "c.txt") as log:  # a log that is kept: always forced at close
        log.write("row\n")
    assert len(synced) == 2
    assert (tmp_path / "a.txt").read_text() == (tmp_path / "b.txt").read_text() == "row\n"


def test_a_run_that_ends_well_forces_neither_journal_at_close(tmp_path, monkeypatch):
    """A run with a statistics step journals its summaries and its manifest rows; on its way out it
    removes the first and rewrites the second, so neither is forced to the disk at close."""
    from test_dataset_runs import make_dataset

    from MedPrepLib.preprocess import load_pipeline
    from MedPrepLib.runner import run_dataset

    data = make_dataset(tmp_path / "in", 2)
    synced = []
    monkeypatch.setattr(appendlog.time, "monotonic", lambda: 100.0)  # no forcing by age
    monkeypatch.setattr(appendlog.os, "fsync", lambda fd: synced.append(fd))
    report = run_dataset(load_pipeline(str(tmp_path / "p.json")), data, tmp_path / "out", workers=1)
    assert len(report.written) == 2 and report.statistics
    assert synced == []
    assert (tmp_path / "out" / "manifest.csv").read_text().count("written") == 2
