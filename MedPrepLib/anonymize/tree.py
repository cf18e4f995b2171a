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
import copy
import errno
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple, Union

import pydicom

from ..atomic import write_json
from ..discovery import read_image_header, unreadable_folder_reason, walk_files
from ..errors import MedPrepError
from ..executor import Executor
from .anonymizer import Anonymizer
from .burnedin import burned_in_reason
from .pixelcheck import pixel_problem
from .rawpixels import copy_extent, pixel_extent, write_header
from ..values import as_int

MAPPING_WARNING = ("This file maps pseudonyms back to real patients and UIDs: it identifies them. "
                   "Store it like the original data and never share it with the anonymized data.")
STAGING_PREFIX = ".medprep-staging-"
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
    resumed: int = 0  # files a killed run of the same command had finished
    workers: Dict[str, int] = field(default_factory=dict)  # files per worker
    retried: List[Tuple[str, int]] = field(default_factory=list)  # (batch, times its worker died under it)


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
                 series_number=as_int(ds.get("SeriesNumber")), modality=str(ds.get("Modality", "") or ""))
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


def _run_span(anonymizer: Anonymizer, files: List[Tuple[int, Path]], staging: Path,
              check_burned_in: bool) -> Union[_Batch, MedPrepError]:
    """A worker's job: some (input file number, path). The anonymizer comes with empty mappings and
    sends back what this batch adds to them. An output error comes back as the value, to be raised
    as it is by the caller."""
    anonymizer = copy.copy(anonymizer)  # when run in the caller's process, its own stays untouched
    anonymizer.uids, anonymizer.patients = {}, {}
    try:
        done = [_process(anonymizer, i, path, staging, check_burned_in) for i, path in files]
    except MedPrepError as exc:
        return exc
    return _Batch(done=done, uids=anonymizer.uids, patients=anonymizer.patients)


class _Journal:
    """The batches a run has finished, appended to its staging folder as they arrive, so that the
    same command run again after a crash (SIGKILL, a reboot) redoes only the files not yet staged.
    A run can be taken up again only with the same key (`--key`), options and input files: the
    staging folder is named by a keyed digest of them. The journal holds the pseudonym mapping,
    as the output of `--mapping` does, until the run ends and removes the staging folder."""

    NAME = "journal.jsonl"

    def __init__(self, staging: Path):
        self.path = staging / self.NAME

    def read(self) -> List[_Batch]:
        batches: List[_Batch] = []
        if not self.path.is_file():
            return batches
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                    done = [_Done(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
                            for d in record["done"]]
                except (ValueError, KeyError, TypeError):
                    break  # the line a crash cut short, and nothing after it
                batches.append(_Batch(done=done, uids=record["uids"], patients=record["patients"]))
        return batches

    def append(self, batch: _Batch) -> None:
        line = json.dumps({"done": [asdict(d) for d in batch.done], "uids": batch.uids,
                           "patients": batch.patients}, default=str)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)


def _run_token(anonymizer: Anonymizer, paths: List[Path]) -> str:
    """Names a run's staging folder: the same for the same key, options and input files (a run
    without a key has a random one, so never matches another)."""
    stamp = []
    for p in paths:
        try:
            st = p.stat()
            stamp.append((str(p), st.st_size, st.st_mtime_ns))
        except OSError:
            stamp.append((str(p), -1, -1))
    text = json.dumps([repr(anonymizer.options), stamp])
    return hashlib.sha256(anonymizer.keys.uid(hashlib.sha256(text.encode()).hexdigest()).encode()).hexdigest()[:16]


def _batches(anonymizer: Anonymizer, paths: List[Path], staging: Path, check_burned_in: bool,
             executor: Executor, journal: _Journal, report: TreeReport) -> Iterator[_Batch]:
    """Every file's outcome, in batches: first those a previous run of the same command finished,
    then the rest, computed by the executor's workers (`report` is told who did what)."""
    finished = journal.read()
    report.resumed = sum(len(b.done) for b in finished)
    yield from finished
    left = sorted(set(range(len(paths))) - {d.index for b in finished for d in b.done})
    if not left:
        return
    size = max(1, min(32, len(left) // (4 * executor.workers)))
    spans = [left[i:i + size] for i in range(0, len(left), size)]
    blank = copy.copy(anonymizer)  # what every job gets: the options and key, none of the mapping
    blank.uids, blank.patients = {}, {}
    arguments = [(blank, [(i, paths[i]) for i in span], staging, check_burned_in) for span in spans]
    for outcome in executor.map(_run_span, arguments, light=True):
        span = spans[outcome.index]
        if outcome.worker:
            report.workers[outcome.worker] = report.workers.get(outcome.worker, 0) + len(span)
        if outcome.attempts > 1:
            report.retried.append((f"files {span[0] + 1}-{span[-1] + 1}", outcome.attempts - 1))
        if outcome.error:  # the worker died every time it ran this batch, or the job broke
            batch = _Batch(done=[_Done(i, skipped=f"unreadable: {outcome.error}") for i in span])
        elif isinstance(outcome.value, MedPrepError):
            raise outcome.value
        else:
            batch = outcome.value
        journal.append(batch)
        yield batch


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
                   progress: Optional[Callable[[int, int], None]] = None,
                   jobs: Union[int, Executor] = 1) -> TreeReport:
    """De-identify every image series under `in_path` into `out_dir`.

    `jobs`: that many local worker processes, or an executor (a Dask cluster, say; left open). The
    output is the same whatever runs it: every replacement is keyed, none depends on order or process.
    A run killed before it ends is taken up again by the same call with the same key (see `_Journal`).

    Series whose pixels may carry identity are withheld unless the options' burned-in policy is
    "keep"; with "fail" a MedPrepError is raised and nothing is written.
    """
    in_path, out_dir = Path(in_path), Path(out_dir)
    _check_paths(in_path, out_dir)
    unreadable_folders: List[Tuple[Path, str]] = []
    paths = list(walk_files(in_path, on_error=lambda folder, exc: unreadable_folders.append(
        (folder, unreadable_folder_reason(exc)))))
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = out_dir / f"{STAGING_PREFIX}{_run_token(anonymizer, paths)}"
        staging.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise MedPrepError(f"cannot create the output folder: {exc.strerror or exc}", out_dir,
                           "choose a folder you can write to") from None
    if isinstance(jobs, int):
        from ..executor.local import LocalPool

        with LocalPool(max(1, min(jobs, len(paths))), preload=[__name__]) as pool:
            return _anonymize(in_path, out_dir, anonymizer, paths, staging, created, progress, pool,
                              unreadable_folders)
    jobs.probe([("read", str(in_path.absolute())), ("write", str(staging.absolute()))])
    return _anonymize(in_path, out_dir, anonymizer, paths, staging, created, progress, jobs,
                      unreadable_folders)


def _anonymize(in_path: Path, out_dir: Path, anonymizer: Anonymizer, paths: List[Path], staging: Path,
               created: bool, progress: Optional[Callable[[int, int], None]], executor: Executor,
               unreadable_folders: List[Tuple[Path, str]]) -> TreeReport:
    policy = anonymizer.options.on_burned_in
    report = TreeReport(unreadable=list(unreadable_folders))
    done: List[_Done] = []
    batches = _batches(anonymizer, paths, staging, policy != "keep", executor, _Journal(staging), report)
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
