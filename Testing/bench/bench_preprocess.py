"""Preprocessing speed: each step against the plain SimpleITK/numpy call it wraps, and the ct-liver
preset against the equivalent TorchIO pipeline, on a 512 x 512 x 300 CT (256 x 256 x 150 with --quick).

Targets: a step at most 1.1x its plain call; the preset at least 5x faster than TorchIO (ratio <= 0.2)
in memory; the file-to-file preset row (with NIfTI input/output) is for information.
Both sides start from the same numpy arrays; a SimpleITK anchor therefore includes the numpy <-> image
copies (GetImageFromArray / GetArrayFromImage) that any numpy caller of SimpleITK pays. All in-process,
best of 3 (1 with --quick) after a warm-up run, ours and the anchor alternating.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, List, Tuple

import numpy as np
import SimpleITK as sitk

import timing
from MedPrepLib.nifti import read_nifti, write_nifti
from MedPrepLib.preprocess import load_pipeline, run_pipeline
from MedPrepLib.affine import set_sitk_geometry
from MedPrepSample import ct_phantom
from MedPrepLib.affine import LPS_FROM_RAS
from MedPrepLib.volume import Volume

MEAN, STD = -300.0, 400.0  # fixed dataset statistics for dataset_zscore / the preset


def paired(ours: Callable[[], object], anchor: Callable[[], object], repeats: int) -> Tuple[float, float]:
    """Best times of `ours` and `anchor`, run alternately so that load from other processes hits both."""
    times: Tuple[List[float], List[float]] = ([], [])
    for i in range(repeats + 1):
        for fn, sink in ((ours, times[0]), (anchor, times[1])):
            start = time.perf_counter()
            fn()
            if i:  # the first round warms caches and imports
                sink.append(time.perf_counter() - start)
    return min(times[0]), min(times[1])


def sitk_call(array: np.ndarray, affine: np.ndarray, op: Callable) -> Callable[[], np.ndarray]:
    def call() -> np.ndarray:
        img = sitk.GetImageFromArray(array)
        set_sitk_geometry(img, affine)
        return sitk.GetArrayFromImage(op(img))
    return call


def step_cases(raw: Volume, hu: Volume, quick: bool):
    """(case, pipeline step, input volume, anchor name, anchor function)."""
    a, aff = hu.array, hu.affine
    stored = raw.array
    new_size = [int(round(n * s / t)) for n, s, t in zip(hu.shape_xyz, hu.spacing, (1.5, 1.5, 1.0))]
    img = hu.to_sitk()
    centre = np.array(img.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in img.GetSize()]))
    direction = np.reshape(img.GetDirection(), (3, 3))
    origin = (centre - direction @ ((np.array(new_size) - 1) / 2 * np.array([1.5, 1.5, 1.0]))).tolist()
    crop = [n // 2 for n in hu.shape_xyz]
    lo = [(n - c) // 2 for n, c in zip(hu.shape_xyz, crop)]
    cases = [
        ("modality_lut auto (int16 HU)", {"step": "modality_lut"}, raw,
         "numpy min/max range check + int16 add",
         lambda: (stored.min(), stored.max(), stored + np.int16(-1024))),
        ("modality_lut float32", {"step": "modality_lut", "dtype": "float32"}, raw,
         "numpy astype * slope + inter", lambda: stored.astype(np.float32) * np.float32(1.0) + np.float32(-1024.0)),
        ("orient LPS->RAS", {"step": "orient", "axcodes": "RAS"}, hu, "numpy flip + ascontiguousarray",
         lambda: np.ascontiguousarray(a[:, ::-1, ::-1])),
        ("resample 1.5x1.5x1 linear", {"step": "resample", "spacing": [1.5, 1.5, 1.0]}, hu, "sitk.Resample",
         sitk_call(a, aff, lambda i: sitk.Resample(i, new_size, sitk.Transform(), sitk.sitkLinear, origin,
                                                   (1.5, 1.5, 1.0), i.GetDirection(), 0.0, sitk.sitkFloat32))),
        ("crop_pad centre half", {"step": "crop_pad", "shape": crop}, hu, "numpy slice copy",
         lambda: np.ascontiguousarray(a[lo[2]:lo[2] + crop[2], lo[1]:lo[1] + crop[1], lo[0]:lo[0] + crop[0]])),
        ("clip [-200, 250]", {"step": "clip", "min": -200, "max": 250}, hu, "np.clip",
         lambda: np.clip(a, -200, 250)),
        ("scale 1/3071", {"step": "scale", "divide_by": 3071}, hu, "numpy divide", lambda: a / np.float32(3071)),
        ("zscore", {"step": "zscore"}, hu, "numpy (a - mean) / std", lambda: (a - a.mean()) / a.std()),
        ("dataset_zscore", {"step": "dataset_zscore", "mean": MEAN, "std": STD}, hu, "numpy (a - m) / s",
         lambda: (a - np.float32(MEAN)) / np.float32(STD)),
        ("percentile_clip 0.5/99.5", {"step": "percentile_clip"}, hu, "np.percentile + np.clip",
         lambda: np.clip(a, *np.percentile(a, [0.5, 99.5]))),
        ("minmax [0, 1]", {"step": "minmax"}, hu, "numpy (a - min) / (max - min)",
         lambda: (a - a.min()) / (a.max() - a.min())),
        ("log", {"step": "log"}, hu, "np.log1p(np.maximum(a, 0))", lambda: np.log1p(np.maximum(a, 0))),
        ("denoise median r=1", {"step": "denoise", "method": "median", "radius": 1}, hu, "sitk.Median",
         sitk_call(a, aff, lambda i: sitk.Median(i, [1, 1, 1]))),
    ]
    if not quick:
        cases.append(("denoise curvature_flow 2 it", {"step": "denoise", "iterations": 2}, hu,
                      "sitk.CurvatureFlow",
                      sitk_call(a, aff, lambda i: sitk.CurvatureFlow(i, timeStep=0.0625, numberOfIterations=2))))
    return cases


def torchio_pipeline():
    import torchio as tio

    return tio.Compose([tio.ToCanonical(), tio.Resample((1.5, 1.5, 1.0), image_interpolation="linear"),
                        tio.Clamp(out_min=-200, out_max=250), tio.Lambda(lambda x: (x - MEAN) / STD)])


def run(workdir: Path, quick: bool) -> List[dict]:
    shape = (150, 256, 256) if quick else (300, 512, 512)
    spacing = (1.4, 1.4, 2.0) if quick else (0.7, 0.7, 1.0)
    repeats = 1 if quick else 3
    hu_array = ct_phantom(shape[0], shape[1], shape[2], spacing, 0)
    affine = LPS_FROM_RAS @ np.diag(list(spacing) + [1.0])  # the phantom is LPS with identity orientation
    raw = Volume((hu_array + 1024).astype(np.int16), affine, slope=1.0, inter=-1024.0, meta={"Modality": "CT"})
    hu = Volume(hu_array.astype(np.float32), affine.copy())
    size = "x".join(str(n) for n in reversed(shape))
    rows = []
    for case, params, vol, anchor, anchor_fn in step_cases(raw, hu, quick):
        pipeline = load_pipeline([params])
        ours, anchor_s = paired(lambda v=vol, p=pipeline: run_pipeline(v, p), anchor_fn, repeats)
        # orient hands on a permuted, flipped view: its copy, if any, is paid by whatever reads it next.
        note = "ours is a view, not a copy" if params["step"] == "orient" else ""
        rows.append(timing.row("preprocess", f"{case} ({size})", ours, anchor, anchor_s, target="<= 1.1", note=note))

    # The ct-liver preset against the same chain in TorchIO.
    pipeline = load_pipeline("ct-liver", overrides=[f"dataset_zscore.mean={MEAN}", f"dataset_zscore.std={STD}"])
    try:
        import torch
        import torchio as tio
    except ImportError:
        rows.append(timing.row("preprocess", "preset ct-liver", paired(lambda: run_pipeline(raw, pipeline),
                                                                       lambda: None, repeats)[0],
                               "TorchIO (not installed)", None, note="pip install -e '.[bench]'"))
        return rows
    torch.set_num_threads(sitk.ProcessObject.GetGlobalDefaultNumberOfThreads())
    transform = torchio_pipeline()
    tensor = torch.from_numpy(np.ascontiguousarray(raw.array.T[np.newaxis]))  # TorchIO's (C, x, y, z)

    def tio_memory():
        image = tio.ScalarImage(tensor=tensor.float() - 1024.0, affine=affine)
        return transform(tio.Subject(ct=image))

    ours, anchor_s = paired(lambda: run_pipeline(raw, pipeline), tio_memory, repeats)
    rows.append(timing.row("preprocess", f"preset ct-liver in memory ({size})", ours,
                           "TorchIO Compose, same steps", anchor_s, target="<= 0.2"))
    src = workdir / "ct.nii.gz"
    write_nifti(raw, src, overwrite=True)

    def ours_file():
        out, _ = run_pipeline(read_nifti(src), pipeline)
        write_nifti(out, workdir / "ours.nii.gz", overwrite=True)

    def tio_file():
        subject = transform(tio.Subject(ct=tio.ScalarImage(src)))
        subject["ct"].save(workdir / "tio.nii.gz")

    ours, anchor_s = paired(ours_file, tio_file, repeats)
    rows.append(timing.row("preprocess", f"preset ct-liver .nii.gz to .nii.gz ({size})", ours,
                           "TorchIO load, Compose, save", anchor_s,
                           note="information: includes NIfTI reading and writing, which nifti.py owns"))
    return rows
