"""`medprep demo`: write the built-in synthetic CT and chest X-ray as DICOM, then convert them to NIfTI.

Everything comes from MedPrepSample (no data is shipped or downloaded), so the demo shows the
whole path from scanner-like DICOM to NIfTI on any machine in a few seconds.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import nibabel as nib
import numpy as np

from ..convert import ConvertOptions, ConvertReport, convert
from ..errors import MedPrepError
from ..boxes import BoxOptions
from ..cases import LabelTableOptions
from ..splits import parse_split_spec

CXR_SET = 8  # labelled radiographs of the classification and detection demos


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="write a synthetic CT and chest X-rays as DICOM, convert them and run the presets",
        description="Write a synthetic 512x512 body CT and a 2048x2048 chest X-ray (DX, MONOCHROME1) as "
                    "DICOM into OUT_DIR/dicom/{ct,cxr}, convert them into OUT_DIR/nifti and describe the "
                    "result, then run ct-liver on the CT and cxr-pneumonia (class labels, patient-grouped split, "
                    "classes layout) and cxr-heart-detection (heart boxes) on 8 small labelled radiographs in "
                    "OUT_DIR/cxr-set (RSNA layout) with their tables in OUT_DIR/tables. "
                    "Existing sample DICOM is reused unless --overwrite is given; the NIfTI files "
                    "are always rewritten from it. The patient in the sample is fake (DEMO^PATIENT).",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="folder for the demo output")
    parser.add_argument("--slices", type=int, default=200, metavar="N",
                        help="number of CT slices (default 200)")
    parser.add_argument("--overwrite", action="store_true", help="rewrite the sample DICOM instead of reusing it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.slices < 1:
        raise MedPrepError(f"--slices must be at least 1, got {args.slices}")
    # Test and demo data live outside the runtime package (Slicer loads MedPrepLib, not MedPrepSample):
    # imported only when the demo runs.
    try:
        from MedPrepSample import cxr_dataset_tables, write_ct_series, write_cxr, write_cxr_dataset
    except ModuleNotFoundError as exc:
        if exc.name != "MedPrepSample":
            raise
        raise MedPrepError("the demo needs the MedPrepSample package, which is not installed", None,
                           "install MedPrep with pip (it installs MedPrepSample beside MedPrepLib)") from exc
    out = Path(args.out_dir)
    dicom, nifti = out / "dicom", out / "nifti"
    try:
        write_sample(dicom / "ct", args.slices, args.overwrite,
                     lambda d: write_ct_series(d, n_slices=args.slices, series_number=1))
        write_sample(dicom / "cxr", 1, args.overwrite, lambda d: [write_cxr(d, series_number=2)])
        write_sample(out / "cxr-set", CXR_SET, args.overwrite, lambda d: write_cxr_dataset(d, CXR_SET))
        tables = out / "tables"
        tables.mkdir(parents=True, exist_ok=True)
        for name, text in cxr_dataset_tables(CXR_SET).items():
            (tables / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise MedPrepError(f"cannot write the sample DICOM: {exc.strerror or exc}", exc.filename or out,
                           "choose a folder you can write to") from exc
    started = time.perf_counter()
    report = convert(dicom, nifti, ConvertOptions(overwrite=True), warn=_warn)
    print(f"converted {report.n_files} DICOM files in {time.perf_counter() - started:.1f} s into {nifti}:")
    describe_nifti(report)
    ok = bool(report.written) and not report.failed
    ok = preprocess_sample("ct-liver", dicom / "ct", out / "ct-liver") and ok
    # The labelled radiographs as `medprep run` takes them from the command line in the README:
    # class labels and a patient-grouped split for classification, heart boxes for detection.
    split = parse_split_spec("train=0.5,val=0.25,test=0.25", seed=0, group_by="patient")
    ok = preprocess_sample("cxr-pneumonia", out / "cxr-set", out / "cxr-pneumonia", ["output.layout=classes"],
                           label_table=LabelTableOptions(tables / "labels.csv", "patientId", "Target"),
                           split=split) and ok
    ok = preprocess_sample("cxr-heart-detection", out / "cxr-set", out / "cxr-heart-detection", split=split,
                           boxes=BoxOptions(tables / "heart.csv", "name", "label")) and ok
    return 0 if ok else 1


def preprocess_sample(preset: str, dicom: Path, out: Path, overrides: Sequence[str] = (), **options: Any) -> bool:
    """Run a preset over sample series, with the QA pictures, exactly as `medprep run` does."""
    from ..preprocess import load_pipeline
    from ..runner import run_dataset

    started = time.perf_counter()
    report = run_dataset(load_pipeline(preset, overrides), dicom, out, workers=1, qa=True, **options)
    print(f"preset {preset}: {len(report.written)} case(s) written, {len(report.skipped)} unchanged, "
          f"in {time.perf_counter() - started:.1f} s into {out}:")
    shown = (".gz", ".npy", ".png", ".html", ".csv")
    for path in sorted(p for p in out.rglob("*") if p.is_file() and (p.suffix in shown or p.name.endswith("s.json"))):
        print(f"  {path.relative_to(out)}")
    for case, reason in report.failed:
        print(f"  failed: {case}: {reason}", file=sys.stderr)
    return not report.failed


def write_sample(folder: Path, n_files: int, overwrite: bool, writer: Callable[[Path], list]) -> None:
    """Write one sample series into `folder`, or reuse it if it is already there.

    The series is written beside `folder` and renamed into place, so an interrupted run never
    leaves a partial series that a later run would take as complete.
    """
    if folder.is_dir() and not overwrite:
        found = sum(1 for p in folder.iterdir() if p.is_file())
        if found != n_files:
            raise MedPrepError(f"{folder.name} sample has {found} files, this run wants {n_files}", folder,
                               "use --overwrite to rewrite the sample")
        print(f"reusing {folder} ({found} DICOM file{'s' if found != 1 else ''})")
        return
    started = time.perf_counter()
    part = folder.with_name(f".{folder.name}.part")
    old = folder.with_name(f".{folder.name}.old")
    for leftover in (part, old):
        shutil.rmtree(leftover, ignore_errors=True)
    paths = writer(part)
    if folder.exists():
        folder.rename(old)
    part.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    print(f"wrote {folder} ({len(paths)} DICOM file{'s' if len(paths) != 1 else ''}, "
          f"{time.perf_counter() - started:.1f} s)")


def describe_nifti(report: ConvertReport) -> None:
    """One line per written NIfTI, read back with nibabel: shape, spacing, orientation, value range."""
    for output in report.written:
        img = nib.load(str(output.nifti))
        raw = np.asanyarray(img.dataobj.get_unscaled())
        slope, inter = img.dataobj.slope, img.dataobj.inter
        lo, hi = sorted((float(raw.min()) * slope + inter, float(raw.max()) * slope + inter))
        shape = "x".join(str(n) for n in img.shape)
        spacing = "x".join(f"{z:.3g}" for z in img.header.get_zooms()[:3])
        code = "".join(nib.aff2axcodes(img.affine))
        print(f"  {output.nifti.name}: {shape} voxels, {spacing} mm, {code}, values {lo:g}..{hi:g}")
    for failed in report.failed:
        print(f"  not converted: {failed.reason} ({failed.path})", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"medprep: warning: {message}", file=sys.stderr)
