"""DICOM -> NIfTI conversion speed and memory: `medprep convert` against dcm2niix, dicom2nifti, SimpleITK.

Cases: the synthetic 512x512 CT from MedPrepSample at two slice counts (also used to check that
time grows linearly with the number of slices), and the GE conformance set (dcm_qa_ge) when
../shared/conformance is present. Every tool runs as a command in a fresh process, writes into an
emptied folder, gets one untimed warm-up run and is timed best-of-N.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from timing import CONFORMANCE, Measurement, fresh_dir, measure_all, row, run_once, tool

from MedPrepSample import write_ct_series

BENCH = "convert"

_DICOM2NIFTI = ("import sys, dicom2nifti; "
                "dicom2nifti.convert_directory(sys.argv[1], sys.argv[2], compression=True, reorient=True)")
_SITK = """
import os, sys, SimpleITK as sitk
src, dst, ext = sys.argv[1:]
for folder, _, _ in os.walk(src):
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid))
        sitk.WriteImage(reader.Execute(), os.path.join(dst, uid + ext))
"""


def _commands(src: Path, out: Path) -> dict[str, list[str]]:
    medprep, dcm2niix = tool("medprep"), tool("dcm2niix")
    cmds = {
        "ours .nii.gz": [medprep, "convert", str(src), str(out)],
        "ours .nii": [medprep, "convert", "--no-gz", str(src), str(out)],
        "dcm2niix -z y": [dcm2niix, "-z", "y", "-o", str(out), str(src)],
        "dcm2niix -z n": [dcm2niix, "-z", "n", "-o", str(out), str(src)],
        "dicom2nifti": [sys.executable, "-c", _DICOM2NIFTI, str(src), str(out)],
        "SimpleITK .nii.gz": [sys.executable, "-c", _SITK, str(src), str(out), ".nii.gz"],
        "SimpleITK .nii": [sys.executable, "-c", _SITK, str(src), str(out), ".nii"],
    }
    return {name: cmd for name, cmd in cmds.items() if cmd[0]}


def ours_available() -> bool:
    medprep = tool("medprep")
    return bool(medprep) and run_once([medprep, "convert", "--help"])[2] == 0


def _volume_mb(folder: Path) -> float | None:
    """Uncompressed voxel data written into `folder`, in MB (the size the converter must hold)."""
    total = 0
    for path in list(folder.rglob("*.nii")) + list(folder.rglob("*.nii.gz")):
        header = nib.load(str(path)).header
        total += int(np.prod(header.get_data_shape())) * header.get_data_dtype().itemsize
    return total / 2 ** 20 if total else None


def _case(name: str, src: Path, workdir: Path, repeats: int, with_ours: bool,
          baseline_mb: float | None) -> tuple[list[dict], dict]:
    out = workdir / "out"
    commands = {key: cmd for key, cmd in _commands(src, out).items()
                if with_ours or not key.startswith("ours")}
    # The output folder is emptied before every run, so the output voxel size is read from a run
    # of its own: of ours, else of dcm2niix.
    volume_mb = None
    for key in ("ours .nii", "dcm2niix -z n"):
        if key in commands:
            fresh_dir(out)()
            if run_once(commands[key])[2] == 0:
                volume_mb = _volume_mb(out)
                break
    results = measure_all(commands, repeats, prepare=fresh_dir(out))
    for tool_name, m in results.items():
        print(f"   {name:9s} {tool_name:18s} {_describe(m)}", flush=True)

    def best(key: str) -> float | None:
        m = results.get(key)
        return m.best_s if m else None

    def note(*keys: str) -> str:
        notes = [f"{k}: {results[k].error}" for k in keys if k in results and results[k].error]
        if not with_ours:
            notes.insert(0, "medprep convert not available yet")
        return "; ".join(notes)

    gz, nii = "ours .nii.gz", "ours .nii"
    rows = [
        row(BENCH, f"{name} .nii.gz", best(gz), "dcm2niix -z y", best("dcm2niix -z y"), "<= 0.5",
            note=note(gz, "dcm2niix -z y")),
        row(BENCH, f"{name} .nii.gz", best(gz), "dicom2nifti", best("dicom2nifti"), "<= 0.15",
            note=note(gz, "dicom2nifti")),
        row(BENCH, f"{name} .nii", best(nii), "dcm2niix -z n", best("dcm2niix -z n"), "<= 2.5",
            note=note(nii, "dcm2niix -z n")),
        row(BENCH, f"{name} .nii.gz", best(gz), "SimpleITK .nii.gz", best("SimpleITK .nii.gz"),
            note=note(gz, "SimpleITK .nii.gz")),
        row(BENCH, f"{name} .nii", best(nii), "SimpleITK .nii", best("SimpleITK .nii"),
            note=note(nii, "SimpleITK .nii")),
    ]
    peak = results[gz].peak_rss_mb if gz in results else None
    # Below ~100 MB of voxels the interpreter and its libraries, not the data, set the peak.
    small = volume_mb is not None and volume_mb < 100 and baseline_mb is not None
    rows.append(row(BENCH, f"{name} peak RSS", peak, "output volume", volume_mb, "" if small else "<= 2.5",
                    unit="MB", note=f"small volume; medprep alone peaks at {baseline_mb:.0f} MB" if small
                    else note(gz)))
    d2n = results.get("dcm2niix -z y")
    rows.append(row(BENCH, f"{name} peak RSS", peak, "dcm2niix -z y", d2n.peak_rss_mb if d2n else None,
                    unit="MB", note=note(gz)))
    return rows, {k: v.best_s for k, v in results.items()}


def _describe(m: Measurement) -> str:
    if m.error:
        return f"FAILED ({m.error})"
    return f"best {m.best_s:.2f} s of {len(m.times_s)}, peak {m.peak_rss_mb:.0f} MB"


def run(workdir: Path, quick: bool) -> list[dict]:
    repeats = 1 if quick else 3
    slice_counts = (150, 300) if quick else (300, 600)
    with_ours = ours_available()
    baseline_mb = run_once([tool("medprep"), "--version"])[1] if with_ours else None
    rows: list[dict] = []
    per_slice: dict[str, dict[int, float | None]] = {}
    for n in slice_counts:
        src = workdir / f"ct{n}"
        write_ct_series(src, n_slices=n)
        case_rows, best = _case(f"ct{n}", src, workdir, repeats, with_ours, baseline_mb)
        rows.extend(case_rows)
        for key, seconds in best.items():
            per_slice.setdefault(key, {})[n] = seconds / n if seconds else None
        shutil.rmtree(src)  # up to 300 MB that the next case does not need

    small, large = slice_counts
    for key in ("ours .nii.gz", "dcm2niix -z y"):
        times = per_slice.get(key, {})
        label = "ours" if key.startswith("ours") else key
        rows.append(row(BENCH, f"per-slice time ct{large} / ct{small} ({label})", times.get(large),
                        f"{key} per slice @ct{small}", times.get(small),
                        "<= 1.2" if key.startswith("ours") else "",
                        note="" if with_ours or not key.startswith("ours") else "medprep convert not available yet"))

    ge = CONFORMANCE / "dcm_qa_ge" / "In"
    if ge.is_dir():
        rows.extend(_case("dcm_qa_ge", ge, workdir, repeats, with_ours, baseline_mb)[0])
    else:
        print(f"   dcm_qa_ge skipped: {ge} not found", flush=True)
    return rows
