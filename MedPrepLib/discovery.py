"""Find DICOM image series anywhere under a path and split them as dcm2niix would.

Files are recognised by content, never by name. Non-DICOM files, DICOMDIR and non-image objects
(structured reports, presentation states, encapsulated documents, raw data) are skipped and
reported; segmentations (SEG) and RT structure sets are listed apart as annotations of the image
series they reference. Frames are grouped by SeriesInstanceUID, then split where one series
holds several volumes: different matrix size or orientation, echo number, image kind
(magnitude/phase/real/imaginary/field map), and derived or localizer images.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from pydicom.uid import UID

from .dicomfile import DicomFile, NotDicomError, read_header
from .frames import Frame, file_frames
from .values import as_int

KIND_POSTFIX = {"M": "", "P": "_ph", "R": "_real", "I": "_imaginary", "B0": "_fieldmaphz"}
DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
# Segmentation Storage and RT Structure Set Storage: annotations of image series, listed apart.
ANNOTATION_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.481.3")


@dataclass
class Skipped:
    path: Path
    reason: str


@dataclass
class Series:
    """One volume's worth of frames (a 2D, 3D or 4D image once assembled)."""

    uid: str
    frames: List[Frame]
    postfix: str = ""          # dcm2niix-style name suffix when one SeriesInstanceUID is split
    warnings: List[str] = field(default_factory=list)

    @property
    def files(self) -> List[DicomFile]:
        seen: "OrderedDict[int, DicomFile]" = OrderedDict()
        for fr in self.frames:
            seen.setdefault(id(fr.file), fr.file)
        return list(seen.values())

    @property
    def first(self):
        return self.frames[0].ds

    def _get(self, keyword: str, default: Any = "") -> Any:
        value = self.first.get(keyword, default)
        return default if value is None else value

    @property
    def modality(self) -> str:
        return str(self._get("Modality"))

    @property
    def series_number(self) -> Optional[int]:
        try:
            return int(self._get("SeriesNumber", None))
        except (TypeError, ValueError):
            return None

    @property
    def description(self) -> str:
        return str(self._get("SeriesDescription"))

    @property
    def protocol(self) -> str:
        return str(self._get("ProtocolName"))

    @property
    def derived(self) -> bool:
        return self.frames[0].derived

    @property
    def localizer(self) -> bool:
        return self.frames[0].localizer

    @property
    def kind(self) -> str:
        return self.frames[0].kind

    @property
    def size(self) -> Tuple[int, int]:
        return int(self._get("Rows", 0) or 0), int(self._get("Columns", 0) or 0)

    def summary(self, show_phi: bool = False) -> Dict[str, Any]:
        """A table row describing the series; patient identity only when asked for."""
        rows, cols = self.size
        mosaic = self.frames[0].mosaic_slices
        if mosaic:
            from .assemble import mosaic_layout

            rows, cols = mosaic_layout(self.frames[0], rows, cols)[2:]
        row = {
            "study_date": str(self._get("StudyDate")),
            "modality": self.modality,
            "series_number": self.series_number,
            "description": self.description + self.postfix,
            "rows": rows,
            "columns": cols,
            "frames": len(self.frames),
            "slices_per_frame": max(1, mosaic),
            "files": len(self.files),
            "derived": self.derived,
            "localizer": self.localizer,
            "kind": self.kind,
            "warnings": list(self.warnings),
            "series_uid": self.uid if show_phi else None,
        }
        if not show_phi:
            del row["series_uid"]
        else:
            row["patient_name"] = str(self._get("PatientName"))
            row["patient_id"] = str(self._get("PatientID"))
        return row


@dataclass
class ScanResult:
    series: List[Series]
    skipped: List[Skipped]
    n_files: int
    annotations: List[Any] = field(default_factory=list)   # MedPrepLib.annotations.AnnotationObject

    def annotations_of(self, series: Series) -> List[Any]:
        """The SEG and RTSTRUCT objects that annotate `series`. When one SeriesInstanceUID was split
        into several volumes, they go with its main part (no postfix), else with its first part."""
        parts = [s for s in self.series if s.uid == series.uid]
        main = next((s for s in parts if not s.postfix), parts[0] if parts else series)
        return [a for a in self.annotations if series.uid in a.referenced_series] if main is series else []

    def skipped_by_reason(self) -> Dict[str, int]:
        return count_reasons(self.skipped)


def count_reasons(skipped: List[Skipped]) -> Dict[str, int]:
    """How many files were skipped for each kind of reason (the text before any colon)."""
    counts: Dict[str, int] = {}
    for s in skipped:
        key = s.reason.split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    return counts


def unreadable_folder_reason(exc: OSError) -> str:
    """Why a folder of the input could not be listed, as scan and anonymize report it."""
    return f"unreadable folder: {exc.strerror or exc.__class__.__name__}"


def walk_files(root: Union[str, Path],
               on_error: Optional[Callable[[Path, OSError], None]] = None) -> Iterator[Path]:
    """Every regular file under root, following directory symlinks once (loops are cut).

    A folder that cannot be listed is passed to `on_error` (the walk goes on); without it, it raises.
    """
    root = Path(root)
    if root.is_file():
        yield root
        return
    if not root.is_dir():  # a device or socket given as the input: nothing to walk
        return
    seen = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            real = os.path.realpath(folder)
            if real in seen:
                continue
            seen.add(real)
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            if on_error is None:
                raise
            on_error(folder, exc)
            continue
        subdirs = []
        for entry in entries:
            try:
                if entry.is_dir():
                    subdirs.append(Path(entry.path))
                elif entry.is_file():
                    yield Path(entry.path)
            except OSError:
                continue
        stack.extend(reversed(subdirs))


def _sop_class(ds) -> str:
    return str(ds.get("SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "")
               or "")


def _non_image_reason(f: DicomFile) -> Optional[str]:
    ds = f.ds
    sop = _sop_class(ds)
    media = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    if DICOMDIR_CLASS in (sop, media) or "DirectoryRecordSequence" in ds:
        return "DICOMDIR"
    if sop in ANNOTATION_CLASSES:
        return None  # kept: scan lists them as annotations, anonymize de-identifies them with their images
    if not f.has_pixels:
        if len(ds) == 0:
            return "unreadable DICOM file: empty or truncated data set"
        name = UID(sop).name if sop else "unknown SOP class"
        if "Image Storage" in name:
            # An image object without pixels is a damaged file (truncated copy, failed transfer).
            return f"unreadable image: {name} without pixel data (truncated or incomplete file)"
        return f"non-image object: {name}" if sop else "no pixel data"
    if not ds.get("Rows") or not ds.get("Columns"):
        return "image without Rows/Columns"
    return None


def read_image_header(path: Path) -> Tuple[Optional[DicomFile], str]:
    """The header of an image file, or None and why the file is skipped ("not DICOM", ...)."""
    try:
        f = read_header(path)
    except NotDicomError as exc:
        return None, "not DICOM" if exc.what == "not a DICOM file" else exc.what
    reason = _non_image_reason(f)
    return (None, reason) if reason else (f, "")


def _split_key(fr: Frame) -> Tuple:
    ds = fr.ds
    ori = tuple(round(v, 3) for v in fr.orientation) if fr.orientation else None
    # A multi-frame object without echo numbers tells its echoes apart by each frame's effective
    # echo time (MR Echo functional group); split_series numbers them in order of echo time.
    echo: Any = fr.echo
    if echo is None and fr.index is not None and fr.echo_time is not None:
        echo = ("TE", round(fr.echo_time, 4))
    return (
        as_int(ds.get("Rows")) or 0, as_int(ds.get("Columns")) or 0,
        ori, echo, fr.kind, fr.derived, fr.localizer, fr.mosaic_slices,
    )


def _echo_numbers(keys: List[Tuple]) -> Dict[Any, Optional[int]]:
    """Each split key's echo (key[3]) as a number: echo numbers as they are, echo times ranked."""
    times = sorted({k[3][1] for k in keys if isinstance(k[3], tuple)})
    return {k[3]: (times.index(k[3][1]) + 1 if isinstance(k[3], tuple) else k[3]) for k in keys}


def split_series(uid: str, frames: List[Frame], keys: List[Tuple]) -> List[Series]:
    """The volumes under one series UID; `keys` are the frames' `_split_key`s, taken where the headers were read."""
    groups: "OrderedDict[Tuple, List[Frame]]" = OrderedDict()
    for fr, key in zip(frames, keys):
        groups.setdefault(key, []).append(fr)
    parts = list(groups.items())
    numbers = _echo_numbers([k for k, _ in parts])
    if len(parts) == 1:
        # One volume still says what it is, as dcm2niix names it: a later echo (_e2) and a phase,
        # real, imaginary or field-map image keep their postfix.
        key, fr0 = parts[0][0], frames[0]
        postfix = ""
        if not fr0.derived and not fr0.localizer:
            echo = numbers[key[3]]
            postfix = (f"_e{echo}" if echo is not None and echo > 1 else "") + KIND_POSTFIX.get(fr0.kind, "")
        return [Series(uid=uid, frames=frames, postfix=postfix)]
    # Several volumes under one UID get dcm2niix's postfixes: _e<n> for echoes (ordinal when the
    # echo numbers do not tell them apart), then the image kind.
    primary = [p for p in parts if not p[1][0].derived and not p[1][0].localizer]
    echoes = {numbers[k[3]] for k, _ in primary}
    kinds = [k[4] for k, _ in primary]
    multi_echo = len(echoes) > 1 or (len(primary) > 1 and len(set(kinds)) > 1)
    out = []
    ordinal = 0
    for key, frs in parts:
        fr0 = frs[0]
        postfix = ""
        if fr0.localizer:
            postfix = "_i"
        elif fr0.derived:
            postfix = "_ADC" if "ADC" in " ".join(str(v) for v in fr0.ds.get("ImageType") or ()) else "_derived"
        else:
            ordinal += 1
            if multi_echo:
                echo = numbers[key[3]]
                postfix = f"_e{echo if len(echoes) > 1 and echo is not None else ordinal}"
            postfix += KIND_POSTFIX.get(fr0.kind, "")
        out.append(Series(uid=uid, frames=frs, postfix=postfix))
    # Different matrix sizes or orientations that are not told apart otherwise.
    names = {}
    for s in out:
        names.setdefault(s.postfix, []).append(s)
    for same in names.values():
        if len(same) > 1:
            for i, s in enumerate(same[1:], start=2):
                s.postfix += f"_{i}"
                s.warnings.append("series split: frames differ in matrix size or orientation")
    return out


@dataclass
class FileScan:
    """What scanning one file found: its frames with their series and split keys, or why it is skipped."""

    path: Path
    frames: List[Frame] = field(default_factory=list)
    series_key: Tuple[str, str] = ("", "")
    split_keys: List[Tuple] = field(default_factory=list)
    reason: str = ""
    annotation: Any = None          # an AnnotationObject for SEG and RTSTRUCT files


def scan_file(path: Path) -> FileScan:
    f, reason = read_image_header(path)
    if f is None:
        return FileScan(path, reason=reason)
    if _sop_class(f.ds) in ANNOTATION_CLASSES:
        from .annotations import describe

        try:
            return FileScan(path, annotation=describe(f.ds, path))
        except (ValueError, TypeError, AttributeError) as exc:
            return FileScan(path, reason=f"malformed annotation object: {exc.__class__.__name__}")
    try:
        frames = file_frames(f)
    except Exception as exc:  # noqa: BLE001 - malformed functional groups etc.
        return FileScan(path, reason=f"malformed image header: {exc.__class__.__name__}")
    uid = str(f.ds.get("SeriesInstanceUID", "") or f"no-series-uid:{path.parent}")
    # dcm2niix also keeps apart files that share a UID but not a SeriesNumber.
    return FileScan(path, frames, (uid, str(f.ds.get("SeriesNumber", ""))), [_split_key(fr) for fr in frames])


def scan_files(paths: List[Path]) -> List[FileScan]:
    return [scan_file(p) for p in paths]


# Files a worker scans at a time when `scan` is given a pool: a few tens of milliseconds of work.
SCAN_CHUNK = 64
ChunkMap = Callable[[Callable[[List[Path]], List[FileScan]], List[List[Path]]], Iterable[List[FileScan]]]


def scan(path: Union[str, Path], ignore_derived: bool = False,
         progress: Optional[Callable[[int, int], None]] = None, map_chunks: Optional[ChunkMap] = None) -> ScanResult:
    """Find every image series under `path` (a folder or a single file).

    `map_chunks(scan_files, chunks)`, if given, scans the chunks of files elsewhere (worker processes;
    a local pool scans here too while its workers start) and returns their results in order. The
    headers stay where they were read: a Frame's file comes back with its path, offsets and pixel
    attributes, and reads its header again when asked (see DicomFile), which the scan itself does
    for one file per series only.
    """
    skipped: List[Skipped] = []

    def unreadable(folder: Path, exc: OSError) -> None:
        skipped.append(Skipped(folder, unreadable_folder_reason(exc)))

    files = list(walk_files(path, on_error=unreadable))
    if map_chunks is None:
        scanned: Iterable[FileScan] = (scan_file(p) for p in files)
    else:
        chunks = [files[i:i + SCAN_CHUNK] for i in range(0, len(files), SCAN_CHUNK)]
        scanned = (one for chunk in map_chunks(scan_files, chunks) for one in chunk)
    by_uid: "OrderedDict[Tuple[str, str], Tuple[List[Frame], List[Tuple]]]" = OrderedDict()
    annotations = []
    for i, one in enumerate(scanned):
        if progress:
            progress(i + 1, len(files))
        if one.annotation is not None:
            annotations.append(one.annotation)
            continue
        if one.reason:
            skipped.append(Skipped(one.path, one.reason))
            continue
        frames, keys = by_uid.setdefault(one.series_key, ([], []))
        frames.extend(one.frames)
        keys.extend(one.split_keys)
    series: List[Series] = []
    for (uid, _number), (frames, keys) in by_uid.items():
        for s in split_series(uid, frames, keys):
            if ignore_derived and (s.derived or s.localizer):
                skipped.extend(Skipped(f.path, "derived or localizer image (ignored on request)")
                               for f in s.files)
                continue
            series.append(s)
    series.sort(key=lambda s: (s.series_number if s.series_number is not None else 1 << 30,
                               s.postfix, s.uid))
    present = {s.uid for s in series}
    for a in annotations:
        a.missing_reference = not (set(a.referenced_series) & present)
    return ScanResult(series=series, skipped=skipped, n_files=len(files), annotations=annotations)
