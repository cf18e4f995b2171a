"""Dataset runs: one pipeline over every case of a folder, on worker processes or a Dask cluster, resumable.

Input: see `cases` (NIfTI layouts with labels matched by name, or a DICOM tree, one case per series).

Output folder: the cases in the pipeline's format, `pipeline.json` (the resolved pipeline, for
replay), `statistics.json` (dataset statistics from the training cases only), `manifest.csv`
(what was written from what, journaled as cases finish) and, with QA, `qa/CASE.png` plus
`qa/index.html`. While the statistics pass runs, `statistics-journal.jsonl` keeps each training
case's summary as it arrives (see `statistics_journal`).

A case is skipped when the manifest shows it was written by the same pipeline and statistics
from inputs of the same size and modification time, and its outputs still exist: running a
command again after a crash redoes only the cases it had not finished. A case that fails is
reported and the run goes on; one whose worker dies under it runs again (see `executor`).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from .targets import attach_annotations, remove_moved, split_cases, write_boxes, write_labels_csv
from .boxes import BoxOptions
from .cases import (Case, LabelTableOptions, find_cases, input_is_colour, is_dicom_tree, read_case, read_image,
                    worker_preload)
from .dataset_statistics import compute_statistics
from .errors import MedPrepError
from .executor import Executor, limit_threads
from .manifest import Journal, read_manifest, write_manifest
from .preprocess import pipeline as pl
from .splits import SplitSpec
from .stage import Stage, remove_leftovers
from .statistics_journal import JOURNAL_NAME, SummaryJournal


def case_job(case: Case, pipeline: pl.Pipeline, statistics: Dict[int, Dict[str, Any]], out_dir: Path,
             qa: bool, per_host: int, stage: Optional[Stage] = None) -> Dict[str, Any]:
    """Process and write one case; returns its manifest row fields (errors are returned, not raised)."""
    from .export import case_targets
    from .process import process_case

    start = time.monotonic()
    try:
        limit_threads(per_host)
        staged = stage.take(case.case_id) if stage is not None else None
        source: pl.Source
        if staged is not None:
            (source, label), first = staged, stage.index
        else:
            (source, label), first = read_case(case), 0
        del staged
        paths = case_targets(out_dir, case.case_id, pipeline.output, case.training, label is not None,
                             case.split_name, case.target)
        result = process_case(source, pipeline, paths, label, statistics, case.boxes, start=first,
                              qa=out_dir / "qa" / f"{case.case_id}.png" if qa else None,
                              original=(lambda: read_image(case.image, case.series)) if first else None,
                              title=case.case_id, overwrite=True)
        out, out_label = result.image, result.label
        labels = sorted(int(v) for v in np.unique(out_label.array)) if out_label is not None else []
        return {"status": "written", "outputs": result.written["image"] + result.written["label"] +
                result.written["qa"], "labels": labels, "boxes": result.boxes,
                "shape": list(out.shape_xyz[:3]), "modality": str(out.meta.get("Modality", "")),
                "colour": out.is_rgb,
                "seconds": time.monotonic() - start}
    except MedPrepError as exc:
        return {"status": "failed", "error": exc.one_line(), "seconds": time.monotonic() - start}
    except Exception as exc:  # noqa: BLE001 - one broken case must not stop the others
        return {"status": "failed", "error": f"internal error: {type(exc).__name__}: {exc}",
                "seconds": time.monotonic() - start}


@dataclass
class RunReport:
    written: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    failed: List[Tuple[str, str]] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    statistics: Dict[int, Dict[str, Any]] = field(default_factory=dict)
    retried: List[Tuple[str, int]] = field(default_factory=list)  # (case, times its worker died under it)
    workers: Dict[str, int] = field(default_factory=dict)  # cases written or failed, per worker
    seconds: float = 0.0
    unlabelled: List[str] = field(default_factory=list)  # cases the labels table has no label for
    unused_labels: List[Tuple[str, int]] = field(default_factory=list)  # (id, table line) matching no case
    identifying_ids: bool = False  # the table's ids are patient data: name their lines, not them
    splits: Dict[str, int] = field(default_factory=dict)  # cases per split
    unboxed: List[str] = field(default_factory=list)  # cases the boxes file does not name
    boxes: Dict[str, int] = field(default_factory=dict)  # boxes and points written, by status
    summaries: Tuple[int, int] = (0, 0)  # statistics pass: (taken from an interrupted run's journal, computed)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _relative(path: Optional[Path], root: Path) -> str:
    if path is None:
        return ""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _first_file(root: Path) -> Optional[Path]:
    """Some file under `root` (depth first, in name order): what a worker must see of the input."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if filenames:
            return Path(dirpath) / sorted(filenames)[0]
    return None


def run_dataset(pipeline: pl.Pipeline, input_dir: Union[str, Path], output_dir: Union[str, Path],
                workers: Optional[int] = None, qa: bool = False, labels_dir: Optional[Union[str, Path]] = None,
                split_file: Optional[Union[str, Path]] = None, statistics_file: Optional[Union[str, Path]] = None,
                progress: Optional[Callable[[str, int, int], None]] = None,
                executor: Optional[Executor] = None, label_table: Optional[LabelTableOptions] = None,
                split: Optional[SplitSpec] = None, boxes: Optional[BoxOptions] = None,
                label_names: Optional[List[str]] = None, dataset: Any = None) -> RunReport:
    """Run `pipeline` over every case of `input_dir` into `output_dir`; see the module documentation.

    The jobs run on `executor` (left open), or on a local pool of `workers` processes made for the run.
    Labels come from `labels_dir` (label maps named like the images) or `label_table`, boxes and
    points from `boxes`; the splits from `split_file` or `split` (see `splits`). `dataset`
    (export.DatasetInfo): name, label names and modalities for the nnU-Net dataset.json.
    """
    in_root, out_dir = Path(input_dir).absolute(), Path(output_dir).absolute()
    if out_dir.resolve() == in_root.resolve() or in_root.resolve() in out_dir.resolve().parents:
        raise MedPrepError("the output folder is inside the input folder", out_dir,
                           "write the outputs elsewhere: inputs are never modified")
    if executor is None:
        from .executor import make_executor

        with make_executor(workers, preload=worker_preload(in_root)) as pool:
            return run_dataset(pipeline, in_root, out_dir, qa=qa, labels_dir=labels_dir, split_file=split_file,
                               statistics_file=statistics_file, progress=progress, executor=pool,
                               label_table=label_table, split=split, boxes=boxes, label_names=label_names,
                               dataset=dataset)
    started = time.monotonic()
    if not in_root.is_dir():
        raise MedPrepError("input folder does not exist", in_root, "give a folder of NIfTI files or a DICOM tree")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MedPrepError(f"cannot create the output folder: {exc.strerror or exc}", out_dir,
                           "choose a folder you can write to") from None
    sample = _first_file(in_root)
    executor.probe([("read", str(in_root))] + ([("read", str(sample))] if sample else []) +
                   [("write", str(out_dir))])
    dicom = is_dicom_tree(in_root)
    report = RunReport()
    stages: List[Stage] = []  # the statistics pass's intermediate images, when it runs
    remove_leftovers(out_dir)
    try:
        cases = find_cases(in_root, labels_dir, executor.ordered if dicom and executor.workers > 1 else None,
                           (lambda d, t: progress("DICOM headers", d, t)) if progress else None)
        for c in cases:
            c.label_names = list(label_names) if label_names else None
        rows_by_id = attach_annotations(cases, label_table, boxes, report)
        split_cases(cases, out_dir, split_file, split, rows_by_id, report)
        if pipeline.output.format == "nnunet":
            from .export import check_one_channel_kind, unlabelled_training

            # Refused before any case is written; write_nnunet_dataset_json checks the outputs again.
            check_one_channel_kind({c.case_id: input_is_colour(c) for c in cases})
            report.warnings += unlabelled_training(cases)
        executor.limit(len(cases))
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
            journal = SummaryJournal(out_dir / JOURNAL_NAME, pipeline.digest(), stamps)
            if previous.get("inputs") == training_stamp:
                report.statistics = pl.load_statistics(stats_path, pipeline)
            else:
                # Cases whose summaries come from the journal of a killed run are not staged: pass 2
                # reads them from their inputs again (the steps before the statistics step, once, for
                # the cases done before the kill). Reusing the killed run's staged images would mean
                # a stage folder outliving its run, unpickling files a dead process left (loading a
                # pickle runs code; today only files this run wrote are loaded), and a killed run's
                # Dask tasks possibly still writing into it.
                stages.append(Stage(out_dir, pipeline.statistics_steps()[-1]))
                with journal:
                    report.statistics = compute_statistics(
                        cases, pipeline, executor, (lambda d, t: progress("statistics", d, t)) if progress else None,
                        report.warnings.append, stages[0], journal)
                pl.save_statistics(stats_path, pipeline, report.statistics,
                                   [c.case_id for c in cases if c.training], extra={"inputs": training_stamp})
                report.summaries = (journal.reused, journal.computed)
            journal.remove()

        # Pass 2: every case, skipping those already written from the same inputs, pipeline and statistics.
        manifest_path = out_dir / "manifest.csv"
        previous_rows = read_manifest(manifest_path)
        rows: Dict[str, Dict[str, Any]] = {}
        arguments, pending, sizes = [], [], []
        base = _digest([pipeline.digest(), {str(k): v for k, v in report.statistics.items()}, qa])
        for c in cases:
            stamp = stamps[c.case_id]
            annotations = [c.split, c.target, repr(c.boxes)] if c.split or c.target or c.boxes is not None else []
            annotations += [c.label_names] if c.label_names else []
            fingerprint = _digest([base, c.training, stamp] + annotations)
            row = {"case": c.case_id, "split": c.split_name,
                   "image_in": _relative(c.image, in_root), "label_in": _relative(c.label, in_root),
                   "fingerprint": fingerprint}
            old = previous_rows.get(c.case_id)
            if (old and old.get("fingerprint") == fingerprint and old.get("status") in ("written", "unchanged")
                    and all((out_dir / p).exists() for p in (old.get("outputs") or "").split(";") if p)):
                rows[c.case_id] = dict(old, status="unchanged", seconds="0.000", error="")
                report.skipped.append(c.case_id)
                continue
            rows[c.case_id] = row
            arguments.append((c, pipeline, report.statistics, out_dir, qa, executor.per_host,
                              stages[0] if stages else None))
            pending.append(c)
            sizes.append(c.input_bytes(stamp))
        meta: Dict[str, Dict[str, Any]] = {}
        with Journal(manifest_path) as journal:
            for done, outcome in enumerate(executor.map(case_job, arguments, sizes), 1):
                case = pending[outcome.index]
                result = outcome.value if not outcome.error else {"status": "failed", "error": outcome.error,
                                                                  "seconds": 0.0}
                row = rows[case.case_id]
                row.update(status=result["status"], outputs=";".join(_relative(Path(p), out_dir)
                                                                      for p in result.get("outputs", [])),
                           seconds=f"{result['seconds']:.3f}", error=result.get("error", ""))
                journal.append(row)
                if result["status"] == "written":
                    remove_moved(out_dir, previous_rows.get(case.case_id), row)
                    report.written.append(case.case_id)
                    meta[case.case_id] = result
                else:
                    report.failed.append((case.case_id, result["error"]))
                if outcome.attempts > 1:
                    report.retried.append((case.case_id, outcome.attempts - 1))
                if outcome.worker:
                    report.workers[outcome.worker] = report.workers.get(outcome.worker, 0) + 1
                if progress:
                    progress("cases", done, len(arguments))
    finally:
        for stage in stages:
            stage.remove()
    remove_leftovers(out_dir)  # what workers that died mid-write left beside the outputs
    write_manifest(manifest_path, [rows[c.case_id] for c in cases])
    write_labels_csv(out_dir / "labels.csv", cases, rows)
    if boxes is not None:
        write_boxes(out_dir, cases, rows, meta, report)
    if pipeline.output.format == "nnunet":
        from .export import write_nnunet_dataset_json

        done_ok = [c for c in cases if rows[c.case_id]["status"] in ("written", "unchanged")]
        report.warnings += write_nnunet_dataset_json(out_dir, pipeline, done_ok, meta, dataset)
    if qa:
        from .qa import write_index

        write_index(out_dir / "qa", [c.case_id for c in cases if (out_dir / "qa" / f"{c.case_id}.png").is_file()])
    report.seconds = time.monotonic() - started
    return report
