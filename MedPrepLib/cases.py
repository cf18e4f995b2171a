"""The cases of a dataset folder, and reading one case.

Input: a folder of NIfTI images (flat with optional `--labels` folder, `images/` + `labels/`, or
the nnU-Net/MSD layout `imagesTr/labelsTr/imagesTs`), or a DICOM tree (one case per series).
Labels are matched by case name: the file name without extension, without a `_0000` channel
suffix, and for labels without a `_seg`, `_label`, `_mask` suffix.

Labels can also come from a table (CSV or TSV, `read_label_table`): one row per case id, the id
matched to the input by a rule the user picks (`case_key`): the file or folder stem, or the
DICOM PatientID, StudyInstanceUID or AccessionNumber of the series. The table's label column holds
either class labels (a classification target per case) or label map files (a segmentation per
case, for DICOM trees as for NIfTI folders); `attach_labels` gives each case its own.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Union

from .errors import MedPrepError

if TYPE_CHECKING:  # numpy is not imported by `medprep run`'s parser, nor before its worker pool starts
    from .volume import Volume

NIFTI_RE = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)
LABEL_SUFFIX_RE = re.compile(r"_(seg|label|labels|mask)$", re.IGNORECASE)
CHANNEL_RE = re.compile(r"_\d{4}$")
DICOM_SUFFIX_RE = re.compile(r"\.(dcm|dicom|dic)$", re.IGNORECASE)
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".txt")
CASE_ID_RULES = ("stem", "PatientID", "StudyInstanceUID", "AccessionNumber")


@dataclass
class Case:
    case_id: str
    image: Path                      # a NIfTI file, or the folder of a DICOM series
    label: Optional[Path] = None
    training: bool = True
    series: Any = None               # discovery.Series for DICOM cases
    inputs: List[Path] = field(default_factory=list)
    target: Optional[str] = None     # class label from a labels table
    boxes: Optional[List[Any]] = None  # boxes.Box on the input image, when a boxes file names the case
    key: str = ""                    # the labels table's id this case matched
    split: str = ""                  # train, val, test, ... ("" : train if `training`, else test)
    label_names: Optional[List[str]] = None  # SEG/RTSTRUCT labels: segments/ROIs kept, numbered 1, 2, ...

    @property
    def split_name(self) -> str:
        return self.split or ("train" if self.training else "test")

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


# What a run's workers import before their first job (the fork server's preload). A run over DICOM
# also has them import the DICOM reader (pydicom); a NIfTI run leaves it out: 23 MB less in each worker.
PRELOAD = ["MedPrepLib.nifti", "nibabel", "MedPrepLib.runner", "MedPrepLib.preprocess.steps", "MedPrepLib.export",
           "SimpleITK", "numpy"]
DICOM_PRELOAD = PRELOAD + ["MedPrepLib.convert"]


def worker_preload(input_dir: Union[str, Path]) -> List[str]:
    """What the workers of a run over `input_dir` import before their first job."""
    root = Path(input_dir)
    return DICOM_PRELOAD if root.is_dir() and is_dicom_tree(root) else PRELOAD


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
    if labels_dir and not set(_niftis(Path(labels_dir))) & {c.label for c in cases}:
        raise MedPrepError("no label map in --labels matches an image", labels_dir,
                           "name each label like its image (case.nii.gz -> case.nii.gz or case_seg.nii.gz); for a "
                           "DICOM tree give a table of case id -> label file (--labels TABLE.csv) or SEG/RTSTRUCT")
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


# ---------------------------------------------------------------- labels from a table

@dataclass
class LabelTableOptions:
    """Where a run's labels come from when `--labels` names a table rather than a folder."""

    path: Path
    id_column: str
    label_column: str
    case_id: str = "stem"               # one of CASE_ID_RULES
    case_names: str = "auto"            # auto, id or hash (see `assign_keys`)
    require: bool = False               # every case labelled and every label used, or an error


@dataclass
class LabelTable:
    path: Path
    labels: Dict[str, str]              # id -> class label, or label map path when `maps`
    lines: Dict[str, int]               # id -> line of its first row (1 = header)
    rows: Dict[str, Dict[str, str]]     # id -> its first row (for grouping by another column)
    maps: bool = False


def is_label_table(path: Union[str, Path]) -> bool:
    path = Path(path)
    return path.suffix.lower() in TABLE_SUFFIXES and not path.is_dir()


def read_table_rows(path: Union[str, Path]) -> Tuple[List[str], List[Tuple[int, Dict[str, str]]]]:
    """(columns, [(line, row)]) of a CSV or TSV table (UTF-8, with or without BOM), values stripped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise MedPrepError(f"cannot read the table: {exc.strerror}", path) from None
    except UnicodeDecodeError:
        raise MedPrepError("the table is not UTF-8 text", path, "save it as CSV or TSV in UTF-8") from None
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") or first.count("\t") > first.count(",") else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    columns = [c.strip() for c in (reader.fieldnames or [])]
    rows = [(line, {(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str)})
            for line, row in enumerate(reader, 2)]
    return columns, rows


def read_label_table(path: Union[str, Path], id_column: str, label_column: str) -> LabelTable:
    """Labels per id from a CSV or TSV table; rows repeating an id must agree on its label.

    When every label is a NIfTI file name, the labels are label maps (paths relative to the table).
    """
    path = Path(path)
    columns, rows = read_table_rows(path)
    for column, option in ((id_column, "--id-column"), (label_column, "--label-column")):
        if column not in columns:
            raise MedPrepError(f"the labels table has no column '{column}' (it has: {', '.join(columns)})", path,
                               f"name one of its columns with {option}")
    labels: Dict[str, str] = {}
    lines: Dict[str, int] = {}
    by_id: Dict[str, Dict[str, str]] = {}
    for line, row in rows:
        key, label = row.get(id_column, ""), row.get(label_column, "")
        if not key or not label:
            continue
        if key in labels and labels[key] != label:
            raise MedPrepError(f"the labels table gives id '{key}' two labels: '{labels[key]}' (line {lines[key]}) "
                               f"and '{label}' (line {line})", path, "give each id one label")
        if key not in labels:
            labels[key], lines[key], by_id[key] = label, line, row
    if not labels:
        raise MedPrepError(f"the labels table has no row with both '{id_column}' and '{label_column}'", path)
    maps = all(NIFTI_RE.search(v) for v in labels.values())
    if maps:
        labels = {k: str((path.parent / v).resolve()) for k, v in labels.items()}
        for key, value in labels.items():
            if not Path(value).is_file():
                raise MedPrepError(f"the label map of id '{key}' does not exist (line {lines[key]})", value,
                                   "fix the path in the labels table (relative to the table's folder)")
    return LabelTable(path, labels, lines, by_id, maps)


def case_key(case: Case, rule: str) -> str:
    """The id of `case` under `rule` (see CASE_ID_RULES), as a labels table would name it."""
    if rule == "stem":
        if case.series is None:
            return case.case_id
        # One file per case (a radiograph): its name, as in `<patientId>.dcm`; else the series folder.
        return DICOM_SUFFIX_RE.sub("", case.inputs[0].name) if len(case.inputs) == 1 else case.image.name
    if case.series is None:
        raise MedPrepError(f"--case-id {rule} needs a DICOM input", case.image,
                           "match NIfTI cases by file name (--case-id stem)")
    return str(case.series.first.get(rule, "") or "").strip()


# A DICOM case named after these would carry patient data into file names.
IDENTIFYING_RULES = ("PatientID", "StudyInstanceUID", "AccessionNumber")
SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class LabelMatch:
    unlabelled: List[str] = field(default_factory=list)              # case names without a label
    unused: List[Tuple[str, int]] = field(default_factory=list)      # (id, table line) without a case


def assign_keys(cases: List[Case], rule: str = "stem", names: str = "auto") -> bool:
    """Set each case's id under `rule`; rename DICOM cases after it when `names` says so.

    names: "id" names DICOM cases after their id, "hash" keeps the series hash, "auto" keeps the id
    for the stem rule only (PatientID, StudyInstanceUID and AccessionNumber are identifying).
    NIfTI cases keep their file names. Returns whether the ids are identifying and not shown in names.
    """
    if rule not in CASE_ID_RULES:
        raise MedPrepError(f"unknown --case-id '{rule}'", hint=f"choose one of {', '.join(CASE_ID_RULES)}")
    rename = names == "id" or (names == "auto" and rule not in IDENTIFYING_RULES)
    for c in cases:
        c.key = case_key(c, rule)
    if rename:
        dicom = [c for c in cases if c.series is not None and c.key]
        count = Counter(SAFE_NAME_RE.sub("_", c.key).strip("._-") for c in dicom)
        for c in dicom:
            name = SAFE_NAME_RE.sub("_", c.key).strip("._-")
            if name:
                # One id with several series (a patient's studies): each keeps its series hash after the id.
                c.case_id = name if count[name] == 1 else f"{name}_{c.case_id.split('-', 1)[-1]}"
    return rule in IDENTIFYING_RULES and not rename


def attach_labels(cases: List[Case], table: LabelTable) -> LabelMatch:
    """Give each case (its id set by `assign_keys`) its label from `table`: a class, or a label map."""
    match = LabelMatch()
    for c in cases:
        value = table.labels.get(c.key)
        if value is None:
            match.unlabelled.append(c.case_id)
        elif table.maps:
            c.label = Path(value)
        else:
            c.target = value
    used = {c.key for c in cases}
    match.unused = sorted(((k, table.lines[k]) for k in table.labels if k not in used), key=lambda x: x[1])
    return match


# ---------------------------------------------------------------- reading one case

def input_is_colour(case: Case) -> bool:
    """Whether a case's image is colour (RGB), from what is known without reading its voxels: the
    scanned pixel attributes of a DICOM series, the header of a NIfTI file."""
    if case.series is not None:
        from .pixels import is_colour

        return is_colour(case.series.files[0].pixel_ds)
    if NIFTI_RE.search(case.image.name) and case.image.is_file():
        from .nifti import is_colour_nifti

        return is_colour_nifti(case.image)
    return False


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
            meta.pop("MedPrepIndexMap", None)  # an earlier run's: this file's voxels are the input now
            volume.meta.update(meta)
            volume.history.extend(provenance.get("steps", []))
    return volume


def read_label(path: Union[str, Path]) -> Volume:
    from .labels import label_volume
    from .nifti import read_nifti

    if not Path(path).is_file():
        raise MedPrepError("label file does not exist", path, "give a NIfTI label map")
    return label_volume(read_nifti(path), path)


def read_case_label(case: Case, image: Optional[Volume] = None) -> Optional[Volume]:
    """The case's label map: a NIfTI file, or its series' SEG/RTSTRUCT put on the series' grid
    (`image`: the series as read already, if it was)."""
    if case.label is None:
        return None
    if case.series is None or NIFTI_RE.search(Path(case.label).name):
        return read_label(case.label)
    from .annotations import read_annotation
    from .convert import volume_from_series

    labelmap = read_annotation(case.label, image if image is not None else volume_from_series(case.series))
    if case.label_names:
        labelmap = labelmap.select(case.label_names)
    return labelmap.volume()


def read_case(case: Case) -> Tuple[Union[Volume, Callable[[], Volume]], Optional[Volume]]:
    """The case's image and label map. The image comes as a function that reads it, for the steps to
    free it as they go, unless its SEG/RTSTRUCT needed the series' grid: then it is read once, here."""
    if case.label is not None and case.series is not None and not NIFTI_RE.search(Path(case.label).name):
        image = read_image(case.image, case.series)
        return image, read_case_label(case, image)
    return (lambda: read_image(case.image, case.series)), read_case_label(case)
