"""Dataset runs: one pipeline over every case of a folder, in worker processes, resumable.

Input: a folder of NIfTI images (flat with optional `--labels` folder, `images/` + `labels/`, or
the nnU-Net/MSD layout `imagesTr/labelsTr/imagesTs`), or a DICOM tree (one case per series).
Labels are matched by case name: the file name without extension, without a `_0000` channel
suffix, and for labels without a `_seg`, `_label`, `_mask` suffix. In a DICOM tree, a series' SEG
or RT Structure Set (paired by referenced SeriesInstanceUID) is its label map.

Output folder: the cases in the pipeline's format, `pipeline.json` (the resolved pipeline, for
replay), `statistics.json` (dataset statistics from the training cases only), `manifest.csv`
(what was written from what) and, with QA, `qa/CASE.png` plus `qa/index.html`.

A case is skipped when the manifest shows it was written by the same pipeline and statistics
from inputs of the same size and modification time, and its outputs still exist.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import pickle
import re
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np

from .errors import MedPrepError
from .preprocess import pipeline as pl
from .volume import Volume

NIFTI_RE = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)
LABEL_SUFFIX_RE = re.compile(r"_(seg|label|labels|mask)$", re.IGNORECASE)
CHANNEL_RE = re.compile(r"_\d{4}$")
MANIFEST_FIELDS = ["case", "split", "status", "image_in", "label_in", "outputs", "fingerprint", "seconds",
                   "error"]


@dataclass
class Case:
    case_id: str
    image: Path                      # a NIfTI file, or the folder of a DICOM series
    label: Optional[Path] = None
    training: bool = True
    series: Any = None               # discovery.Series for DICOM cases
    inputs: List[Path] = field(default_factory=list)
    label_names: Optional[List[str]] = None  # SEG/RTSTRUCT labels: segments/ROIs kept, numbered 1, 2, ...

    def input_bytes(self, stamp: Optional[List[Tuple[str, int, int]]] = None) -> int:
        """Bytes of all input files (from `stamp` if already taken): how large a job the case is."""
        return sum(size for _, size, _ in (stamp or self.input_stamp()))

    def input_stamp(self) -> List[Tuple[str, int, int]]:
        """(name, size, mtime) of every input file: cheap evidence that the inputs are unchanged."""
        files = self.inputs or [self.image]
        if self.label is not None:
            files = list(files) + [self.label]
        out = []
        for f in files:
            st = Path(f).stat()
            out.append((str(f), st.st_size, st.st_mtime_ns))
        return out


def case_name(path: Path) -> str:
    return CHANNEL_RE.sub("", NIFTI_RE.sub("", path.name))


def _niftis(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and NIFTI_RE.search(p.name)) if folder.is_dir() else []


def _match_labels(images: List[Path], label_files: List[Path], training: bool) -> List[Case]:
    labels = {LABEL_SUFFIX_RE.sub("", case_name(p)): p for p in label_files}
    return [Case(case_name(p), p, labels.get(case_name(p)), training) for p in images]


def is_dicom_tree(root: Path) -> bool:
    """Whether `find_cases` reads `root` as a DICOM tree: no NIfTI layout and no NIfTI files in it."""
    return not any((root / d).is_dir() for d in ("imagesTr", "imagesTs", "images")) and not _niftis(root)


def find_cases(input_dir: Union[str, Path], labels_dir: Optional[Union[str, Path]] = None,
               map_chunks: Optional[Callable] = None,
               progress: Optional[Callable[[int, int], None]] = None) -> List[Case]:
    """The cases of a dataset folder (see the module documentation for the layouts understood).

    For a DICOM tree, `map_chunks` lets worker processes read the headers and `progress` is told
    of every file read (see `discovery.scan`).
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise MedPrepError("input folder does not exist", root, "give a folder of NIfTI files or a DICOM tree")
    if is_dicom_tree(root):
        cases = dicom_cases(root, map_chunks, progress)
    elif (root / "imagesTr").is_dir() or (root / "imagesTs").is_dir():
        cases = _match_labels(_niftis(root / "imagesTr"), _niftis(root / "labelsTr"), True)
        cases += _match_labels(_niftis(root / "imagesTs"), _niftis(root / "labelsTs"), False)
    elif (root / "images").is_dir():
        cases = _match_labels(_niftis(root / "images"), _niftis(Path(labels_dir or root / "labels")), True)
    else:
        files = _niftis(root)
        is_label = [bool(LABEL_SUFFIX_RE.search(case_name(p))) for p in files]
        images = [p for p, lab in zip(files, is_label) if not lab]
        label_files = [p for p, lab in zip(files, is_label) if lab]
        label_files += _niftis(Path(labels_dir)) if labels_dir else []
        cases = _match_labels(images, label_files, True)
    if not cases:
        raise MedPrepError("no images found", root, "give a folder of .nii/.nii.gz files or a DICOM tree")
    seen = set()
    for c in cases:
        if c.case_id in seen:
            raise MedPrepError(f"two images share the case name '{c.case_id}'", c.image, "rename one of them")
        seen.add(c.case_id)
    return cases


def dicom_cases(root: Path, map_chunks: Optional[Callable] = None,
                progress: Optional[Callable[[int, int], None]] = None) -> List[Case]:
    """One case per DICOM image series; named by a hash of the series UID, never by patient data."""
    from .discovery import scan

    result = scan(root, progress=progress, map_chunks=map_chunks)
    cases = []
    for s in result.series:
        digest = hashlib.sha256((s.uid + s.postfix).encode()).hexdigest()[:12]
        files = [f.path for f in s.files]
        folder = Path(os.path.commonpath([str(p.parent) for p in files]))
        # The series' SEG or RTSTRUCT (paired by referenced SeriesInstanceUID; SEG first) is its label map.
        notes = sorted(result.annotations_of(s), key=lambda a: (a.kind != "SEG", str(a.path)))
        cases.append(Case(f"series-{digest}", folder, notes[0].path if notes else None, True, s, files))
    return cases


def read_case_label(case: Case) -> Optional[Volume]:
    """The case's label map: a NIfTI file, or its series' SEG/RTSTRUCT put on the series' grid."""
    if case.label is None:
        return None
    if case.series is None or NIFTI_RE.search(case.label.name):
        return read_label(case.label)
    from .annotations import read_annotation
    from .convert import volume_from_series

    labelmap = read_annotation(case.label, volume_from_series(case.series))
    if case.label_names:
        labelmap = labelmap.select(case.label_names)
    return labelmap.volume()


def apply_split(cases: List[Case], split_file: Union[str, Path]) -> None:
    """Mark training cases from a file: one case name per line (training), or `case,train|test` rows."""
    try:
        lines = Path(split_file).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise MedPrepError(f"cannot read the split file: {exc.strerror}", split_file) from None
    train, test = set(), set()
    for line in lines:
        parts = [p.strip() for p in line.split(",")]
        if not parts[0] or parts[0].lower() in ("case", "#") or parts[0].startswith("#"):
            continue
        (test if len(parts) > 1 and parts[1].lower() in ("test", "ts", "val", "validation") else train).add(parts[0])
    unknown = sorted((train | test) - {c.case_id for c in cases})
    if unknown:
        raise MedPrepError(f"the split file names case '{unknown[0]}', which the input lacks", split_file)
    for c in cases:
        c.training = c.case_id in train


# ---------------------------------------------------------------- reading one case

def read_image(path: Union[str, Path], series: Any = None) -> Volume:
    """A NIfTI file (with its JSON sidecar's metadata, if any) or a DICOM folder holding one series."""
    path = Path(path)
    if series is not None:
        from .convert import volume_from_series

        return volume_from_series(series)
    if path.is_dir():
        from .convert import read_dicom

        volumes = read_dicom(path)
        if len(volumes) != 1:
            raise MedPrepError(f"the DICOM folder holds {len(volumes)} series", path,
                               "give a folder with one series, or use `medprep run` for all of them")
        return volumes[0]
    if not path.is_file():
        raise MedPrepError("input does not exist", path, "give a NIfTI file or a DICOM folder")
    if not NIFTI_RE.search(path.name):
        raise MedPrepError("unsupported input file", path, "give a .nii/.nii.gz file or a DICOM folder")
    from .nifti import read_nifti

    volume = read_nifti(path)
    sidecar = path.with_name(NIFTI_RE.sub("", path.name) + ".json")
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except ValueError:
            raise MedPrepError("the JSON sidecar is not valid JSON", sidecar, "fix or remove it") from None
        if isinstance(meta, dict):
            provenance = meta.pop("MedPrepProvenance", None) or {}
            volume.meta.update(meta)
            volume.history.extend(provenance.get("steps", []))
    return volume


def read_label(path: Union[str, Path]) -> Volume:
    from .labels import label_volume
    from .nifti import read_nifti

    if not Path(path).is_file():
        raise MedPrepError("label file does not exist", path, "give a NIfTI label map")
    return label_volume(read_nifti(path), path)


# ---------------------------------------------------------------- the work of one worker

def usable_cpus() -> int:
    """How many CPUs this process may run on: a taskset or a cluster job's cgroup may allow fewer
    than the machine has, and threads beyond them only compete."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _limit_threads(workers: int) -> None:
    """ITK's and gzip's threads: each worker gets its share of the usable CPUs (more threads than
    that only compete with the other workers)."""
    import SimpleITK as sitk

    from .nifti import set_gzip_threads

    share = max(1, usable_cpus() // max(1, workers))
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(share)
    set_gzip_threads(share)


class Stage:
    """Training cases as the steps before the last dataset-statistics step left them.

    The statistics pass has to run those steps (reading, resampling, ...) anyway; keeping their
    result on disk until the second pass saves doing them twice. The folder is private to the run
    (made by mkdtemp inside the output folder) and removed when the run ends.
    """

    def __init__(self, out_dir: Path, index: int):
        self.index = index
        self.folder = Path(tempfile.mkdtemp(prefix=".medprep-stage-", dir=out_dir))

    def _path(self, case_id: str) -> Path:
        return self.folder / f"{case_id}.pickle"

    # A staged case is its pickle with the voxel buffers kept out of it (pickle protocol 5), then
    # each buffer's bytes: loading reads them straight into new arrays, where an ordinary pickle
    # would first build a bytes object as large as the volume, a page fault for every 4 kB of it.
    def save(self, case_id: str, image: Volume, label: Optional[Volume]) -> None:
        from .atomic import atomic_open

        buffers: List[pickle.PickleBuffer] = []
        head = pickle.dumps((image, label), protocol=5, buffer_callback=buffers.append)
        with atomic_open(self._path(case_id), "wb", overwrite=True) as fh:
            fh.write(len(head).to_bytes(8, "little") + len(buffers).to_bytes(8, "little") + head)
            for buffer in buffers:
                raw = buffer.raw()
                fh.write(raw.nbytes.to_bytes(8, "little"))
                fh.write(raw)

    def load(self, case_id: str) -> Optional[Tuple[Volume, Optional[Volume]]]:
        path = self._path(case_id)
        if not path.is_file():
            return None
        with open(path, "rb") as fh:  # written by this run, in its own private folder
            n_head, n_buffers = int.from_bytes(fh.read(8), "little"), int.from_bytes(fh.read(8), "little")
            head = fh.read(n_head)
            buffers = []
            for _ in range(n_buffers):
                buffer = np.empty(int.from_bytes(fh.read(8), "little"), np.uint8)
                if fh.readinto(memoryview(buffer)) != buffer.nbytes:
                    raise MedPrepError("a staged case is incomplete", path, "run again")
                buffers.append(buffer)
        return pickle.loads(head, buffers=buffers)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _fit_job(case: Case, pipeline: pl.Pipeline, index: int, statistics: Dict[int, Dict[str, Any]],
             workers: int, stage: Optional[Stage] = None) -> Tuple[bool, Any]:
    """(True, this case's share of the statistics) or (False, why it could not give one)."""
    try:
        _limit_threads(workers)
        label = read_case_label(case)
        keep = None
        if stage is not None and stage.index == index:
            def keep(image: Volume, prepared_label: Optional[Volume]) -> None:
                stage.save(case.case_id, image, prepared_label)
        return True, pl.fit_case(lambda: read_image(case.image, case.series), label, pipeline, index, statistics,
                                 keep)
    except MedPrepError as exc:
        return False, exc.one_line()
    except Exception as exc:  # noqa: BLE001 - one broken case must not stop the others
        return False, f"internal error: {type(exc).__name__}: {exc}"


def _case_job(case: Case, pipeline: pl.Pipeline, statistics: Dict[int, Dict[str, Any]], out_dir: Path,
              qa: bool, workers: int, stage: Optional[Stage] = None) -> Dict[str, Any]:
    """Process and write one case; returns its manifest row fields (errors are returned, not raised)."""
    from .export import write_case

    start = time.monotonic()
    try:
        _limit_threads(workers)
        # The input is kept only for the QA picture; otherwise the pipeline frees it as it goes.
        before = read_image(case.image, case.series) if qa else None
        staged = stage.load(case.case_id) if stage is not None else None
        source: pl.Source
        if staged is not None:
            (source, label), first = staged, stage.index
        else:
            label = read_case_label(case)
            source, first = before if before is not None else (lambda: read_image(case.image, case.series)), 0
        out, out_label = pl.run_pipeline(source, pipeline, label, statistics, start=first)
        del source, staged  # the input, unless kept for the QA picture, goes before the writing
        written = write_case(out_dir, case.case_id, out, out_label, pipeline.output, case.training, overwrite=True)
        outputs = written["image"] + written["label"]
        if before is not None:
            from .qa import write_qa_png

            png = out_dir / "qa" / f"{case.case_id}.png"
            write_qa_png(before, out, out_label, png, title=case.case_id)
            outputs.append(str(png))
        labels = sorted(int(v) for v in np.unique(out_label.array)) if out_label is not None else []
        return {"status": "written", "outputs": outputs, "labels": labels,
                "modality": str(out.meta.get("Modality", "")), "seconds": time.monotonic() - start}
    except MedPrepError as exc:
        return {"status": "failed", "error": exc.one_line(), "seconds": time.monotonic() - start}
    except Exception as exc:  # noqa: BLE001 - one broken case must not stop the others
        return {"status": "failed", "error": f"internal error: {type(exc).__name__}: {exc}",
                "seconds": time.monotonic() - start}


# ---------------------------------------------------------------- the run

@dataclass
class RunReport:
    written: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    failed: List[Tuple[str, str]] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    statistics: Dict[int, Dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_manifest(path: Path) -> Dict[str, Dict[str, str]]:
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["case"]: row for row in csv.DictReader(fh)}


def _relative(path: Optional[Path], root: Path) -> str:
    if path is None:
        return ""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


# What every worker needs, imported once by the fork server rather than by each worker. A run over
# DICOM also preloads the DICOM reader (pydicom); a NIfTI run leaves it out: 23 MB less in each run.
_PRELOAD = ["MedPrepLib.nifti", "MedPrepLib.runner", "MedPrepLib.preprocess.steps", "MedPrepLib.export",
            "SimpleITK", "numpy"]
DICOM_PRELOAD = ["MedPrepLib.convert"]


class Workers:
    """Worker processes for a whole run (both passes), started on first use; a single worker is this process.

    Workers are forked from a fork server that has imported the libraries but never run an ITK
    filter: a worker starts in milliseconds and shares the imported code's pages with the others.
    (Forking this process instead could hand a worker ITK's thread pool in a locked state.) Where
    there is no fork server (Windows), workers are spawned.
    """

    def __init__(self, workers: int, preload: Iterable[str] = ()):
        self.workers = workers
        self.preload = _PRELOAD + [m for m in preload if m not in _PRELOAD]
        self._pool: Optional[ProcessPoolExecutor] = None

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing

            if "forkserver" in multiprocessing.get_all_start_methods():
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(self.preload)
            else:
                context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        return self._pool

    def limit(self, jobs: int) -> int:
        """Workers for `jobs` jobs: fewer processes if the pool has not started yet (one job runs here)."""
        if self._pool is None:
            self.workers = max(1, min(self.workers, jobs))
        return max(1, min(self.workers, jobs))

    def ordered(self, fn: Callable, arguments: List[Any]) -> Iterator[Any]:
        """fn(a) for each a of `arguments`, in their order, computed by the workers."""
        done: Dict[int, Any] = {}
        following = 0
        for i, result in self.map([(fn, (a,)) for a in arguments]):
            done[i] = result
            while following in done:
                yield done.pop(following)
                following += 1

    def map(self, jobs: List[Tuple[Callable, tuple]], sizes: Optional[List[float]] = None) -> Iterator[Tuple[int, Any]]:
        """(job index, result) as jobs finish.

        With `sizes`, workers take the largest jobs first: a large case started last would leave the
        other workers idle while it runs alone.
        """
        if self.workers <= 1:
            for i, (fn, args) in enumerate(jobs):
                yield i, fn(*args)
            return
        pool = self._executor()
        order = sorted(range(len(jobs)), key=lambda i: -sizes[i]) if sizes else range(len(jobs))
        futures = {pool.submit(jobs[i][0], *jobs[i][1]): i for i in order}
        for future in as_completed(futures):
            yield futures[future], future.result()


def compute_statistics(cases: List[Case], pipeline: pl.Pipeline, workers: Union[int, Workers],
                       progress: Optional[Callable[[int, int], None]] = None,
                       warn: Optional[Callable[[str], None]] = None,
                       stage: Optional[Stage] = None) -> Dict[int, Dict[str, Any]]:
    """Dataset statistics of every step that needs them, from the training cases only.

    A training case that cannot be read or fitted is left out of the statistics (and `warn` told).
    With a `stage`, training cases are kept as they were just before step `stage.index`.
    """
    if isinstance(workers, int):
        with Workers(workers) as pool:
            return compute_statistics(cases, pipeline, pool, progress, warn, stage)
    training = [c for c in cases if c.training]
    statistics: Dict[int, Dict[str, Any]] = {}
    for index in pipeline.statistics_steps():
        name = pipeline.steps[index].spec.name
        if not training:
            raise MedPrepError(f"step '{name}' needs dataset statistics but no case is marked for training",
                               hint="check --split")
        jobs = [(_fit_job, (c, pipeline, index, statistics, workers.workers, stage)) for c in training]
        parts: List[Any] = []
        sizes = [c.input_bytes() for c in training]
        for done, (i, (ok, part)) in enumerate(workers.map(jobs, sizes), 1):
            if ok:
                parts.append((i, part))
            elif warn:
                warn(f"{training[i].case_id} left out of the '{name}' statistics: {part}")
            if progress:
                progress(done, len(jobs))
        # Combined in case order, so the result does not depend on which worker finished first.
        statistics[index] = pl.combine(pipeline, index, [part for _, part in sorted(parts, key=lambda x: x[0])])
    return statistics


def run_dataset(pipeline: pl.Pipeline, input_dir: Union[str, Path], output_dir: Union[str, Path],
                workers: Optional[int] = None, qa: bool = False, labels_dir: Optional[Union[str, Path]] = None,
                split_file: Optional[Union[str, Path]] = None, statistics_file: Optional[Union[str, Path]] = None,
                label_names: Optional[List[str]] = None,
                progress: Optional[Callable[[str, int, int], None]] = None) -> RunReport:
    """Run `pipeline` over every case of `input_dir` into `output_dir`; see the module documentation."""
    started = time.monotonic()
    in_root, out_dir = Path(input_dir), Path(output_dir)
    if out_dir.resolve() == in_root.resolve() or in_root.resolve() in out_dir.resolve().parents:
        raise MedPrepError("the output folder is inside the input folder", out_dir,
                           "write the outputs elsewhere: inputs are never modified")
    workers = max(1, workers or usable_cpus())
    dicom = in_root.is_dir() and is_dicom_tree(in_root)
    report = RunReport()
    stages: List[Stage] = []  # the statistics pass's intermediate images, when it runs
    try:
        # One set of worker processes for the whole run: reading a DICOM tree's headers, then both passes.
        with Workers(workers, DICOM_PRELOAD if dicom else []) as pool:
            cases = find_cases(in_root, labels_dir, pool.ordered if dicom and workers > 1 else None,
                               (lambda d, t: progress("DICOM headers", d, t)) if progress else None)
            if split_file:
                apply_split(cases, split_file)
            for c in cases:
                c.label_names = list(label_names) if label_names else None
            workers = pool.limit(len(cases))
            out_dir.mkdir(parents=True, exist_ok=True)
            pipeline.save(out_dir / "pipeline.json")

            # Pass 1: dataset statistics from the training cases (reused while they cannot have changed).
            stats_path = out_dir / "statistics.json"
            stamps = {c.case_id: c.input_stamp() for c in cases}
            training = [(c.case_id, stamps[c.case_id]) for c in cases if c.training]
            training_stamp = _digest([pipeline.digest()] + training)
            if statistics_file:
                report.statistics = pl.load_statistics(statistics_file, pipeline)
            elif pipeline.statistics_steps():
                previous = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
                if previous.get("inputs") == training_stamp:
                    report.statistics = pl.load_statistics(stats_path, pipeline)
                else:
                    stages.append(Stage(out_dir, pipeline.statistics_steps()[-1]))
                    report.statistics = compute_statistics(
                        cases, pipeline, pool, (lambda d, t: progress("statistics", d, t)) if progress else None,
                        report.warnings.append, stages[0])
                    pl.save_statistics(stats_path, pipeline, report.statistics,
                                       [c.case_id for c in cases if c.training], extra={"inputs": training_stamp})

            # Pass 2: every case, skipping those already written from the same inputs, pipeline and statistics.
            manifest_path = out_dir / "manifest.csv"
            previous_rows = read_manifest(manifest_path)
            rows: Dict[str, Dict[str, Any]] = {}
            jobs, pending, sizes = [], [], []
            base = _digest([pipeline.digest(), {str(k): v for k, v in report.statistics.items()}, qa])
            for c in cases:
                stamp = stamps[c.case_id]
                fingerprint = _digest([base, c.training, stamp] + ([c.label_names] if c.label_names else []))
                row = {"case": c.case_id, "split": "train" if c.training else "test",
                       "image_in": _relative(c.image, in_root), "label_in": _relative(c.label, in_root),
                       "fingerprint": fingerprint}
                old = previous_rows.get(c.case_id)
                if (old and old.get("fingerprint") == fingerprint and old.get("status") in ("written", "unchanged")
                        and all((out_dir / p).exists() for p in old.get("outputs", "").split(";") if p)):
                    rows[c.case_id] = dict(old, status="unchanged", seconds="0.000", error="")
                    report.skipped.append(c.case_id)
                    continue
                rows[c.case_id] = row
                jobs.append((_case_job, (c, pipeline, report.statistics, out_dir, qa, workers,
                                         stages[0] if stages else None)))
                pending.append(c)
                sizes.append(c.input_bytes(stamp))
            meta: Dict[str, Dict[str, Any]] = {}
            for done, (i, result) in enumerate(pool.map(jobs, sizes), 1):
                case = pending[i]
                row = rows[case.case_id]
                row.update(status=result["status"], outputs=";".join(_relative(Path(p), out_dir)
                                                                      for p in result.get("outputs", [])),
                           seconds=f"{result['seconds']:.3f}", error=result.get("error", ""))
                if result["status"] == "written":
                    report.written.append(case.case_id)
                    meta[case.case_id] = result
                else:
                    report.failed.append((case.case_id, result["error"]))
                if progress:
                    progress("cases", done, len(jobs))
    finally:
        for stage in stages:
            stage.remove()
    _write_manifest(manifest_path, [rows[c.case_id] for c in cases])
    if pipeline.output.format == "nnunet":
        done_ok = [c for c in cases if rows[c.case_id]["status"] in ("written", "unchanged")]
        _write_nnunet_json(out_dir, pipeline, done_ok, meta)
    if qa:
        from .qa import write_index

        write_index(out_dir / "qa", [c.case_id for c in cases if (out_dir / "qa" / f"{c.case_id}.png").is_file()])
    report.seconds = time.monotonic() - started
    return report


def _write_manifest(path: Path, rows: List[Dict[str, Any]]) -> None:
    from .atomic import atomic_open

    with atomic_open(path, "w", overwrite=True) as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _write_nnunet_json(out_dir: Path, pipeline: pl.Pipeline, cases: List[Case],
                       meta: Dict[str, Dict[str, Any]]) -> None:
    """dataset.json for the cases now in the output; label values of unchanged cases come from the old one."""
    from .export import write_dataset_json

    json_path = out_dir / "dataset.json"
    old = json.loads(json_path.read_text()) if json_path.is_file() else {}
    labels = {int(v) for v in old.get("labels", {}).values()}
    channels = list(old.get("channel_names", {}).values())
    for m in meta.values():
        labels.update(m["labels"])
        if not channels:
            channels = [m["modality"] or "image"]
    n_training = sum(1 for c in cases if c.training and c.label is not None)
    write_dataset_json(out_dir, pipeline.name, channels or ["image"], sorted(labels), n_training,
                       pipeline.output.gz, pipeline.description)
