"""`medprep export-seg LABEL.nii.gz REFERENCE_DICOM_DIR OUT.dcm`: a label map as DICOM SEG."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..annotations.export_seg import export_seg
from ..annotations.labelmap import ImageGrid
from ..convert import volume_from_series
from ..discovery import scan
from ..errors import MedPrepError
from ..nifti import read_nifti


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-seg", help="write a label map as DICOM SEG referencing its image series",
                       description="Write LABEL (a NIfTI label map on the grid of a series under REFERENCE, as "
                                   "`medprep convert` writes it) as a DICOM SEG: label value v -> segment number v.")
    p.add_argument("label", metavar="LABEL.nii.gz")
    p.add_argument("reference", metavar="REFERENCE_DICOM_DIR", help="the DICOM image series the labels were drawn on")
    p.add_argument("output", metavar="OUT.dcm")
    p.add_argument("--names", metavar="A,B,...",
                   help="segment names for label values 1, 2, ... (default: the label map's JSON, else 'Segment v')")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.dcm")
    p.set_defaults(func=run)


def _sidecar(label: Path) -> Path:
    name = label.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return label.with_name(name[: -len(ext)] + ".json")
    return label.with_suffix(".json")


def run(args: argparse.Namespace) -> int:
    label_path = Path(args.label)
    if not label_path.is_file():
        raise MedPrepError("label map not found", label_path)
    label = read_nifti(label_path)
    result = scan(args.reference)
    if not result.series:
        raise MedPrepError("no DICOM image series found", args.reference, "give the folder of the annotated images")
    want = tuple(label.array.shape)
    candidates = [s for s in result.series if sorted((*s.size, len(s.frames))) == sorted(want)]
    if len(candidates) != 1:
        raise MedPrepError(f"{len(candidates)} image series under the reference folder match the label map's size "
                           f"{'x'.join(str(v) for v in reversed(want))}", args.reference,
                           "give a folder holding exactly the annotated series")
    series = candidates[0]
    grid = ImageGrid.from_volume(volume_from_series(series))
    names = [n.strip() for n in args.names.split(",")] if args.names else None
    out = export_seg(label, grid, args.output, names=names,
                     sidecar=_sidecar(label_path), overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0
