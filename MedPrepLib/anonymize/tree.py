"""Write a de-identified copy of a DICOM tree, series by series.

Every file is read, de-identified and written in one pass by worker processes (each file needs
nothing from any other: every replacement is keyed). A file's header is parsed once, as discovery
parses it, de-identified in memory and written, followed by the file's pixel element copied byte
for byte. Files are first written into a staging folder inside the output; only when every file
is done are the decisions that need whole series taken (series that may show identity in their
pixels are withheld) and the files renamed to paths made of the new identifiers only:
OUT/<patient pseudonym>/<study UID>/<series UID>/<SOP instance UID>.dcm. An interrupted run
leaves no partial file under a final name. The input is only ever read.

Damaged inputs are reported, never passed on in silence: a file whose pixel data is cut short or
does not match its image attributes is withheld (unless the options keep it), and a file named
like DICOM that cannot be read counts as damaged, not as one more non-DICOM file.
"""
from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple, Union

import pydicom

from ..atomic import write_json
from ..discovery import read_image_header, walk_files
from ..errors import MedPrepError
from .anonymizer import Anonymizer
from .burnedin import burned_in_reason
from .pixelcheck import pixel_problem
from .rawpixels import copy_extent, pixel_extent, write_header

MAPPING_WARNING = ("This file maps pseudonyms back to real patients and UIDs: it identifies them. "
                   "Store it like the original data and never share it with the anonymized data.")
_DAMAGED = ("unreadable", "cannot read", "malformed", "empty", "image without")
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
_OUTPUT_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


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
    # Files whose pixel data is incomplete: withheld, or written when the options keep them.
    damaged: List[Tuple[Path, str]] = field(default_factory=list)


@dataclass
class _Done:
    """What became of one input file (small: this is all that crosses back from a worker)."""

    index: int
    skipped: str = ""  # why the file is not written; empty for an image
    series: Tuple[str, str] = ("", "")  # (SeriesInstanceUID, SeriesNumber): what withholding decides on
    series_number: Optional[int] = None
    modality: str = ""
    burned_in: str = ""  # why its pixels may show identity (then it was not written)
    damaged: str = ""  # why its pixel data is incomplete
    parts: Tuple[str, ...] = ()  # output path components, all replacements
    staged: bool = False


@dataclass
class _Batch:
    """Some files' outcomes; a worker process also sends back the mapping it added."""

    done: List[_Done] = field(default_factory=list)
    uids: Dict[str, str] = field(default_factory=dict)
    patients: Dict[str, dict] = field(default_factory=dict)


def _name(value: str) -> str:
    # Every value used here is a replacement; a missing one must not break the layout.
    value = value.strip()
    return value if value and value not in (".", "..") and os.sep not in value else "unknown"


def _int(value) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _staged(staging: Path, index: int) -> Path:
    """Where input file number `index` waits for its final name."""
    return staging / f"{index}.dcm"


def _skip_reason(path: Path, reason: str) -> str:
    """A file named like DICOM that has no DICOM content is a damaged DICOM file, not just "not DICOM"."""
    if reason != "not DICOM" or path.suffix.lower() not in _DICOM_SUFFIXES:
        return reason
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            return "empty file named like DICOM"
    return "unreadable file named like DICOM: no DICOM header"


def _process(anonymizer: Anonymizer, index: int, path: Path, staging: Path, check_burned_in: bool) -> _Done:
    f, reason = read_image_header(path)
    if f is None:
        return _Done(index, skipped=_skip_reason(path, reason))
    ds = f.ds
    done = _Done(index, series=(str(ds.get("SeriesInstanceUID", "") or ""), str(ds.get("SeriesNumber", ""))),
                 series_number=_int(ds.get("SeriesNumber")), modality=str(ds.get("Modality", "") or ""))
    done.burned_in = (burned_in_reason(ds) or "") if check_burned_in else ""
    if done.burned_in:
        return done  # its series is withheld: no need to write it
    try:
        # Objects without pixel data (RT structure sets) have none to be cut short.
        done.damaged = (pixel_problem(f) or "") if f.has_pixels else ""
    except OSError as exc:
        return _Done(index, skipped=f"unreadable DICOM ({exc.__class__.__name__})")
    if done.damaged and not anonymizer.options.keep_damaged_pixels:
        return done
    done.parts = (_name(anonymizer.pseudonym(ds)),) + tuple(
        _name(anonymizer.uid(str(ds.get(k, "") or ""))) for k in ("StudyInstanceUID", "SeriesInstanceUID",
                                                                    "SOPInstanceUID"))
    target = _staged(staging, index)
    try:
        # Discovery's header plus the raw pixel element, or a full read when that cannot be trusted.
        pixels = pixel_extent(f)
        if pixels is None:
            ds = pydicom.dcmread(str(path), force=True)
        anonymizer.anonymize(ds)
        with open(target, "wb") as fh:
            if pixels is None:
                pydicom.dcmwrite(fh, ds)
            else:
                write_header(fh, ds)
                copy_extent(path, pixels, fh)
    except OSError as exc:
        if exc.errno in _OUTPUT_ERRORS or exc.filename == str(target):
            # The output side failed (full, read-only, not allowed): every further file would too.
            raise MedPrepError(f"cannot write the de-identified copy: {exc.strerror or exc}", staging.parent,
                               "check the free space and permissions of the output folder") from None
        return _Done(index, skipped=f"unreadable DICOM ({exc.__class__.__name__})")
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on corrupt input
        # Whatever went wrong, the staged file is never renamed into the output.
        return _Done(index, skipped=f"unreadable DICOM ({exc.__class__.__name__})")
    done.staged = True
    return done


def _run_span(anonymizer: Anonymizer, paths: List[Path], span: Tuple[int, int], staging: Path,
              check_burned_in: bool) -> _Batch:
    return _Batch(done=[_process(anonymizer, i, paths[i], staging, check_burned_in) for i in range(*span)])


# What forked workers inherit: the anonymizer and the work list; only index ranges go to them and
# small records come back.
_FORKED: Optional[Tuple[Anonymizer, List[Path], Path, bool]] = None


def _forked_worker(span: Tuple[int, int]) -> _Batch:
    assert _FORKED is not None
    anonymizer, paths, staging, check = _FORKED
    anonymizer.uids, anonymizer.patients = {}, {}  # send back only what this batch adds
    batch = _run_span(anonymizer, paths, span, staging, check)
    batch.uids, batch.patients = anonymizer.uids, anonymizer.patients
    return batch


def _batches(anonymizer: Anonymizer, paths: List[Path], staging: Path, check_burned_in: bool,
             jobs: int) -> Iterator[_Batch]:
    global _FORKED
    if jobs > 1 and len(paths) > jobs and "fork" in multiprocessing.get_all_start_methods():
        size = max(1, min(32, len(paths) // (4 * jobs)))
        spans = [(i, min(i + size, len(paths))) for i in range(0, len(paths), size)]
        _FORKED = (anonymizer, paths, staging, check_burned_in)
        try:
            # Pool's exit terminates the workers, also when the caller stops early (policy "fail").
            with multiprocessing.get_context("fork").Pool(jobs) as pool:
                yield from pool.imap(_forked_worker, spans)
        finally:
            _FORKED = None
    else:
        for i in range(len(paths)):
            yield _run_span(anonymizer, paths, (i, i + 1), staging, check_burned_in)


def _check_paths(in_path: Path, out_dir: Path) -> None:
    if not in_path.exists():
        raise MedPrepError("input not found", in_path, "give a DICOM folder or file")
    src, dst = in_path.resolve(), out_dir.resolve()
    if dst == src or src in dst.parents:
        raise MedPrepError("output folder is inside the input", out_dir,
                           "choose an output folder outside the DICOM input")


def _withheld(done: List[_Done]) -> Dict[Tuple[str, str], WithheldSeries]:
    """The series (by UID and number) with at least one file whose pixels may show identity."""
    files: Dict[Tuple[str, str], int] = {}
    for d in done:
        files[d.series] = files.get(d.series, 0) + 1
    withheld: Dict[Tuple[str, str], WithheldSeries] = {}
    for d in done:
        if d.burned_in and d.series not in withheld:
            withheld[d.series] = WithheldSeries(d.series_number, d.modality, files[d.series], d.burned_in)
    return withheld


def _publish(out_dir: Path, staging: Path, done: List[_Done]) -> int:
    """Rename staged files to their final names, in input order (files that share a SOP Instance UID,
    which happens, get a counter rather than overwrite each other). Returns how many."""
    taken: Set[Path] = set()
    made: Set[Path] = set()
    for d in done:
        folder = out_dir.joinpath(*d.parts[:-1])
        path, n = folder / (d.parts[-1] + ".dcm"), 1
        while path in taken:
            n += 1
            path = folder / f"{d.parts[-1]}_{n}.dcm"
        taken.add(path)
        if folder not in made:
            folder.mkdir(parents=True, exist_ok=True)
            made.add(folder)
        os.replace(_staged(staging, d.index), path)
    return len(taken)


def anonymize_tree(in_path: Union[str, Path], out_dir: Union[str, Path], anonymizer: Anonymizer,
                   progress: Optional[Callable[[int, int], None]] = None, jobs: int = 1) -> TreeReport:
    """De-identify every image series under `in_path` into `out_dir`.

    `jobs` > 1 works with that many forked worker processes where the platform can fork (the
    output is the same: every replacement is keyed, none depends on order or process).

    Series whose pixels may carry identity are withheld unless the options' burned-in policy is
    "keep"; with "fail" a MedPrepError is raised and nothing is written.
    """
    in_path, out_dir = Path(in_path), Path(out_dir)
    _check_paths(in_path, out_dir)
    unreadable_folders: List[Tuple[Path, str]] = []
    paths = list(walk_files(in_path, on_error=lambda folder, exc: unreadable_folders.append(
        (folder, f"unreadable folder: {exc.strerror or exc.__class__.__name__}"))))
    policy = anonymizer.options.on_burned_in
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".medprep-staging-", dir=out_dir))
    except OSError as exc:
        raise MedPrepError(f"cannot create the output folder: {exc.strerror or exc}", out_dir,
                           "choose a folder you can write to") from None
    report = TreeReport(unreadable=unreadable_folders)
    done: List[_Done] = []
    batches = _batches(anonymizer, paths, staging, policy != "keep", jobs)
    try:
        for batch in batches:
            for d in batch.done:
                if d.burned_in and policy == "fail":
                    raise MedPrepError(f"series {d.series_number} ({d.modality}) may show identity in its "
                                       f"pixels: {d.burned_in}", paths[d.index],
                                       "check the images, then use --on-burned-in keep or skip")
            done.extend(batch.done)
            anonymizer.uids.update(batch.uids)
            anonymizer.patients.update(batch.patients)
            if progress:
                progress(len(done), len(paths))
        done.sort(key=lambda d: d.index)
        withheld = _withheld([d for d in done if not d.skipped])
        report.withheld = list(withheld.values())
        publish = [d for d in done if d.staged and d.series not in withheld]
        report.written = _publish(out_dir, staging, publish)
        report.series_written = len({d.series[0] for d in publish})
    except BaseException as exc:
        batches.close()  # stops the workers first, so that none writes into what is being removed
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # only when empty: what an earlier run wrote stays
        if isinstance(exc, OSError):
            raise MedPrepError(f"cannot write the output: {exc.strerror or exc}", out_dir,
                               "check the free space and permissions of the output folder") from None
        raise
    shutil.rmtree(staging, ignore_errors=True)  # what is left there belongs to withheld series
    for d in done:
        if d.damaged:
            report.damaged.append((paths[d.index], d.damaged))
        if not d.skipped:
            continue
        if d.skipped == "not DICOM":
            report.not_dicom += 1
        elif d.skipped.startswith(_DAMAGED):
            report.unreadable.append((paths[d.index], d.skipped))
        else:
            report.not_images[d.skipped] = report.not_images.get(d.skipped, 0) + 1
    return report


def write_mapping(path: Union[str, Path], anonymizer: Anonymizer) -> None:
    """The original-to-pseudonym table (patients and UIDs); identifying by nature.

    Mode 0600 whatever the umask, written through a 0600 temporary file in the destination folder
    (then renamed), so that no copy readable by others ever exists, in that folder or elsewhere.
    """
    write_json(path, {
        "warning": MAPPING_WARNING,
        "patients": list(anonymizer.patients.values()),
        "uids": anonymizer.uids,
    }, overwrite=True, permissions=0o600)
