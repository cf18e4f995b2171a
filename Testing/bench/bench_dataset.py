"""One training epoch over a prepared classification dataset (`PreparedDataset`, memory-mapped .npy)
against reading and preprocessing the DICOM every epoch (the cxr-pneumonia chain per image).

Issue target: the prepared epoch at least 20x faster (ratio ours / anchor <= 0.05). Both epochs
touch every value of every image (a sum), as a loader handing batches to a model would.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from MedPrepLib.cases import LabelTableOptions, read_image
from MedPrepLib.dataset import PreparedDataset
from MedPrepLib.preprocess import pipeline as pl
from MedPrepLib.runner import run_dataset
from MedPrepSample import write_cxr
from timing import row


def _make(root: Path, n: int, size: int) -> Path:
    images = root / "dx"
    images.mkdir(parents=True)
    lines = ["patientId,Target"]
    for i in range(n):
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            f = write_cxr(tmp, rows=size, cols=size, seed=i)
            shutil.move(str(f), images / f"p{i:04d}.dcm")
        lines.append(f"p{i:04d},{i % 2}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return images


def _epoch_prepared(out: Path) -> float:
    data = PreparedDataset(out, split="train")
    start = time.perf_counter()
    total = 0.0
    for i in range(len(data)):
        x, _ = data[i]
        total += float(np.asarray(x).sum())
    return time.perf_counter() - start


def _epoch_dicom(images: Path, pipeline: pl.Pipeline, statistics: dict) -> float:
    start = time.perf_counter()
    total = 0.0
    for f in sorted(images.glob("*.dcm")):
        out, _ = pl.run_pipeline(lambda f=f: read_image(f.parent, _series(f)), pipeline, None, statistics)
        total += float(out.array.sum())
    return time.perf_counter() - start


def _series(path: Path):
    from MedPrepLib.discovery import scan

    return scan(path).series[0]


def run(workdir: Path, quick: bool) -> list:
    n, size = (16, 512) if quick else (64, 2048)
    images = _make(workdir, n, size)
    pipeline = pl.load_pipeline("cxr-pneumonia")
    out = workdir / "out"
    report = run_dataset(pipeline, images, out, workers=2,
                         label_table=LabelTableOptions(workdir / "labels.csv", "patientId", "Target"))
    repeats = 1 if quick else 3
    prepared = min(_epoch_prepared(out) for _ in range(repeats))
    dicom = min(_epoch_dicom(images, pipeline, report.statistics) for _ in range(repeats))
    return [row("dataset", f"epoch over {n} DX {size}x{size} -> 224x224 (cxr-pneumonia)", prepared,
                "read + preprocess DICOM", dicom, "<= 0.05",
                note=f"{dicom / prepared:.0f}x faster" if prepared else "")]
