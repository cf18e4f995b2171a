"""The cases of a dataset folder, and reading one case.

Input: a folder of NIfTI images (flat with optional `--labels` folder, `images/` + `labels/`, or
the nnU-Net/MSD layout `imagesTr/labelsTr/imagesTs`), or a DICOM tree (one case per series).
Labels are matched by case name: the file name without extension, without a `_0000` channel
suffix, and for labels without a `_seg`, `_label`, `_mask` suffix.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np

from .errors import MedPrepError
from .volume import Volume

NIFTI_RE = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)
LABEL_SUFFIX_RE = re.compile(r"_(seg|label|labels|mask)$", re.IGNORECASE)
CHANNEL_RE = re.compile(r"_\d{4}$")
@dataclass
class Case:
    case_id: str
    image: Path                      # a NIfTI file, or the folder of a DICOM series
    label: Optional[Path] = None
    training: bool = True
    series: Any = None               # discovery.Series for DICOM cases
    inputs: List[Path] = field(default_factory=list)

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
        cases.append(Case(f"series-{digest}", folder, None, True, s, files))
    return cases


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
    from .nifti import read_nifti

    if not Path(path).is_file():
        raise MedPrepError("label file does not exist", path, "give a NIfTI label map")
    label = read_nifti(path)
    if label.slope != 1.0 or label.inter != 0.0:
        label = label.with_array(label.scaled(), label.affine)
    if label.array.dtype.kind == "f":
        rounded = np.rint(label.array)
        if not np.array_equal(rounded, label.array):
            raise MedPrepError("the label map holds non-integer values", path, "give an integer label map")
        label = label.with_array(rounded.astype(np.int32), label.affine)
    return label
