"""Write a de-identified copy of a DICOM tree, series by series.

Files are found with the same discovery as conversion (`MedPrepLib.discovery.scan`). Each file's
header, parsed once by discovery, is de-identified in place in memory and written atomically,
followed by the file's pixel element copied byte for byte, under a path made of the new
identifiers only: OUT/<patient pseudonym>/<study UID>/<series UID>/<SOP instance UID>.dcm.
The input is only ever read.
"""
from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple, Union

import pydicom

from ..atomic import atomic_open, write_json
from ..dicomfile import DicomFile
from ..discovery import Series, scan
from ..errors import MedPrepError
from .anonymizer import Anonymizer
from .burnedin import burned_in_reason
from .rawpixels import copy_extent, pixel_extent

MAPPING_WARNING = ("This file maps pseudonyms back to real patients and UIDs: it identifies them. "
                   "Store it like the original data and never share it with the anonymized data.")


@dataclass
class WithheldSeries:
    series_number: Optional[int]
    modality: str
    files: int
    reason: str


@dataclass
class TreeReport:
    written: int = 0
    series_written: int = 0
    withheld: List[WithheldSeries] = field(default_factory=list)
    not_dicom: int = 0
    not_images: Dict[str, int] = field(default_factory=dict)  # reason -> count (SR, DICOMDIR, ...)
    unreadable: List[Tuple[Path, str]] = field(default_factory=list)


def _name(value: str) -> str:
    # Every value used here is a replacement; a missing one must not break the layout.
    value = value.strip()
    return value if value and value not in (".", "..") and os.sep not in value else "unknown"


def output_paths(out_dir: Path, files: List[DicomFile], anonymizer: Anonymizer) -> List[Path]:
    """Where each file goes: OUT/<pseudonym>/<new study UID>/<new series UID>/<new SOP UID>.dcm.

    Computed from the original headers with the anonymizer's own mapping, before any file is
    written, so that workers need not agree on anything. Files that share a SOP Instance UID (it
    happens) get a counter rather than overwrite each other.
    """
    taken: Set[Path] = set()
    paths = []
    for f in files:
        ds = f.ds
        folder = out_dir / _name(anonymizer.pseudonym(ds))
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
            folder = folder / _name(anonymizer.uid(str(ds.get(keyword, "") or "")))
        stem = _name(anonymizer.uid(str(ds.get("SOPInstanceUID", "") or "")))
        path, n = folder / (stem + ".dcm"), 1
        while path in taken:
            n += 1
            path = folder / f"{stem}_{n}.dcm"
        taken.add(path)
        paths.append(path)
    return paths


@dataclass
class _Batch:
    """What writing some files produced; a worker process also sends back the mapping it added."""

    written: int = 0
    unreadable: List[Tuple[Path, str]] = field(default_factory=list)
    uids: Dict[str, str] = field(default_factory=dict)
    patients: Dict[str, dict] = field(default_factory=dict)


def _write_files(anonymizer: Anonymizer, items: List[Tuple[DicomFile, Path]]) -> _Batch:
    batch = _Batch()
    for f, target in items:
        try:
            # Discovery's header plus the raw pixel element, or a full read when that cannot be trusted.
            pixels = pixel_extent(f)
            ds = f.ds if pixels is not None else pydicom.dcmread(str(f.path), force=True)
            anonymizer.anonymize(ds)
            with atomic_open(target, "wb", overwrite=True) as fh:
                pydicom.dcmwrite(fh, ds)
                if pixels is not None:
                    copy_extent(f.path, pixels, fh)
        except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on corrupt input
            # Whatever went wrong, nothing half-de-identified is left behind (the write is atomic).
            batch.unreadable.append((f.path, f"unreadable DICOM ({exc.__class__.__name__})"))
            continue
        batch.written += 1
    return batch


def _write_sequential(anonymizer: Anonymizer, items: List[Tuple[DicomFile, Path]],
                      progress: Optional[Callable[[int, int], None]]) -> Iterator[_Batch]:
    for i, item in enumerate(items):
        if progress:
            progress(i + 1, len(items))
        yield _write_files(anonymizer, [item])


# What forked workers inherit: the anonymizer and the work list (sending them would mean pickling
# every header; only index ranges and small results cross between processes).
_FORKED: Optional[Tuple[Anonymizer, List[Tuple[DicomFile, Path]]]] = None


def _forked_worker(span: Tuple[int, int]) -> _Batch:
    assert _FORKED is not None
    anonymizer, items = _FORKED
    anonymizer.uids, anonymizer.patients = {}, {}  # send back only what this batch adds
    batch = _write_files(anonymizer, items[span[0]:span[1]])
    batch.uids, batch.patients = anonymizer.uids, anonymizer.patients
    return batch


def _write_parallel(anonymizer: Anonymizer, items: List[Tuple[DicomFile, Path]], jobs: int,
                    progress: Optional[Callable[[int, int], None]]) -> Iterator[_Batch]:
    global _FORKED
    size = max(1, min(64, len(items) // (4 * jobs)))
    spans = [(i, min(i + size, len(items))) for i in range(0, len(items), size)]
    _FORKED = (anonymizer, items)
    try:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            done = 0
            for batch in pool.imap(_forked_worker, spans):
                done += batch.written + len(batch.unreadable)
                if progress:
                    progress(done, len(items))
                yield batch
    finally:
        _FORKED = None


def _withheld_reason(series: Series) -> Optional[str]:
    for f in series.files:
        reason = burned_in_reason(f.ds)
        if reason:
            return reason
    return None


def _check_paths(in_path: Path, out_dir: Path) -> None:
    if not in_path.exists():
        raise MedPrepError("input not found", in_path, "give a DICOM folder or file")
    src, dst = in_path.resolve(), out_dir.resolve()
    if dst == src or src in dst.parents:
        raise MedPrepError("output folder is inside the input", out_dir,
                           "choose an output folder outside the DICOM input")


def anonymize_tree(in_path: Union[str, Path], out_dir: Union[str, Path], anonymizer: Anonymizer,
                   progress: Optional[Callable[[int, int], None]] = None, jobs: int = 1) -> TreeReport:
    """De-identify every image series under `in_path` into `out_dir`.

    `jobs` > 1 writes with that many forked worker processes where the platform can fork (the
    output is the same: every replacement is keyed, none depends on order or process).

    Series whose pixels may carry identity are withheld unless the options' burned-in policy is
    "keep"; with "fail" a MedPrepError is raised before anything is written.
    """
    in_path, out_dir = Path(in_path), Path(out_dir)
    _check_paths(in_path, out_dir)
    result = scan(in_path)
    report = TreeReport()
    for skipped in result.skipped:
        if skipped.reason == "not DICOM":
            report.not_dicom += 1
        elif skipped.reason.startswith(("unreadable", "cannot read", "malformed")):
            report.unreadable.append((skipped.path, skipped.reason))
        else:
            report.not_images[skipped.reason] = report.not_images.get(skipped.reason, 0) + 1
    policy = anonymizer.options.on_burned_in
    todo: List[Series] = []
    for series in result.series:
        reason = None if policy == "keep" else _withheld_reason(series)
        if reason is None:
            todo.append(series)
            continue
        if policy == "fail":
            raise MedPrepError(f"series {series.series_number} ({series.modality}) may show identity in its "
                               f"pixels: {reason}", hint="check the images, then use --on-burned-in keep "
                               "or skip")
        report.withheld.append(WithheldSeries(series.series_number, series.modality, len(series.files), reason))
    # A file may feed two volumes: each is written once.
    files = list({f.path: f for s in todo for f in s.files}.values())
    items = list(zip(files, output_paths(out_dir, files, anonymizer)))
    if jobs > 1 and len(items) > jobs and "fork" in multiprocessing.get_all_start_methods():
        batches: Iterable[_Batch] = _write_parallel(anonymizer, items, jobs, progress)
    else:
        batches = _write_sequential(anonymizer, items, progress)
    for batch in batches:
        report.written += batch.written
        report.unreadable.extend(batch.unreadable)
        anonymizer.uids.update(batch.uids)
        anonymizer.patients.update(batch.patients)
    report.series_written = len({str(s.uid) for s in todo})
    return report


def write_mapping(path: Union[str, Path], anonymizer: Anonymizer) -> None:
    """The original-to-pseudonym table (patients and UIDs); identifying by nature."""
    write_json(path, {
        "warning": MAPPING_WARNING,
        "patients": list(anonymizer.patients.values()),
        "uids": anonymizer.uids,
    }, overwrite=True)
