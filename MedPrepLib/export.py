"""Writing preprocessed cases: NIfTI, NumPy (.npy/.npz, 3D or 2D slices, channels first) and the
nnU-Net / Medical Segmentation Decathlon layout (imagesTr, labelsTr, imagesTs, dataset.json).

Every image gets a JSON sidecar with its provenance (the pipeline steps from `volume.history`);
NumPy outputs also carry their geometry there (affine, spacing), since .npy has no header.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from .atomic import atomic_open, write_json
from .errors import MedPrepError
from .labels import label_volume
from .nifti import write_nifti
from .sidecar import write_sidecar
from .volume import Volume

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def suffix_of(path: Union[str, Path]) -> str:
    name = str(path).lower()
    for suffix in NIFTI_SUFFIXES + (".npy", ".npz"):
        if name.endswith(suffix):
            return suffix
    raise MedPrepError("unknown output type", path, "name the output .nii.gz, .nii, .npy or .npz")


def stem_of(path: Union[str, Path]) -> Path:
    path = Path(path)
    return path.with_name(path.name[: -len(suffix_of(path))])


def as_dtype(volume: Volume, dtype: str, what: str = "image") -> Volume:
    """The volume with voxels of type `dtype` ("keep": stored values and slope/intercept as they are).

    Integer types round and refuse values out of their range rather than wrapping them.
    """
    if what == "label":
        volume = label_volume(volume)  # whole numbers or a clear refusal, never rounded
    if dtype == "keep":
        return volume
    target = np.dtype(dtype)
    values = volume.scaled()
    if values.dtype == target:
        return volume.with_values(values, volume.affine.copy())
    if np.issubdtype(target, np.integer):
        info = np.iinfo(target)
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if lo < info.min or hi > info.max:
            raise MedPrepError(f"the {what} values [{lo:g}, {hi:g}] do not fit {dtype}",
                               hint="choose a wider output dtype (output.dtype / output.label_dtype)")
        values = np.rint(values) if np.issubdtype(values.dtype, np.floating) else values
    return volume.with_values(values.astype(target), volume.affine.copy())


def channels_first(array: np.ndarray) -> np.ndarray:
    """(C, z, y, x): a 3D volume is one channel, a 4D one has its time points as channels."""
    return array if array.ndim == 4 else array[np.newaxis]


def _geometry(volume: Volume) -> Dict[str, Any]:
    return {"affine_ras": np.round(volume.affine, 6).tolist(), "spacing_xyz": list(volume.spacing),
            "axes": "channel, z, y, x" if volume.array.shape[-3] > 1 else "channel, y, x"}


def _save_npy(path: Path, array: np.ndarray, overwrite: bool) -> None:
    with atomic_open(path, "wb", overwrite=overwrite) as fh:
        np.save(fh, array)


def _arrays(volume: Volume, slices: bool) -> List[np.ndarray]:
    """Channels-first arrays to write: one volume, or one (C, y, x) array per slice along z."""
    data = channels_first(volume.array)
    if slices:
        return [np.ascontiguousarray(data[:, z]) for z in range(data.shape[1])]
    return [data[:, 0] if data.shape[1] == 1 else data]


def write_volume(volume: Volume, path: Union[str, Path], dtype: str = "float32", slices: bool = False,
                 sidecar: bool = True, overwrite: bool = False, what: str = "image") -> List[Path]:
    """Write `volume` to `path`, its type chosen by the suffix; returns every file written."""
    path = Path(path)
    suffix = suffix_of(path)
    volume = as_dtype(volume, dtype, what)
    stem = stem_of(path)
    written: List[Path] = []
    try:
        if suffix in NIFTI_SUFFIXES:
            written.append(write_nifti(volume, path, gz=suffix == ".nii.gz", overwrite=overwrite))
        elif suffix == ".npy":
            arrays = _arrays(volume, slices)
            targets = [stem.with_name(f"{stem.name}_z{z:03d}.npy") for z in range(len(arrays))] if slices else [path]
            for target, array in zip(targets, arrays):
                _save_npy(target, array, overwrite)
                written.append(target)
        else:
            arrays = _arrays(volume, slices)
            stacked = np.stack(arrays) if slices else arrays[0]
            with atomic_open(path, "wb", overwrite=overwrite) as fh:
                np.savez(fh, **{what: stacked, "affine": volume.affine})
            written.append(path)
    except FileExistsError as exc:
        raise MedPrepError("output exists", str(exc), "use --overwrite to replace it") from None
    if sidecar:
        side = stem.with_name(stem.name + ".json")
        if suffix in (".npy", ".npz"):
            volume = volume.with_stored(volume.array, volume.affine.copy())
            volume.meta["MedPrepGeometry"] = _geometry(volume)
        try:
            write_sidecar(volume, side, overwrite=overwrite)
        except FileExistsError as exc:
            raise MedPrepError("output exists", str(exc), "use --overwrite to replace it") from None
        written.append(side)
    return written


def case_targets(out_dir: Union[str, Path], case: str, output: Any, training: bool,
                 has_label: bool) -> Dict[str, Path]:
    """Where a dataset case goes: image, label (if any), for `output` (pipeline OutputParams)."""
    out_dir = Path(out_dir)
    nii = ".nii.gz" if output.gz else ".nii"
    if output.format == "nnunet":
        folder = "Tr" if training and has_label else "Ts"
        targets = {"image": out_dir / f"images{folder}" / f"{case}_0000{nii}"}
        if has_label:
            targets["label"] = out_dir / f"labels{folder}" / f"{case}{nii}"
        return targets
    suffix = {"nifti": nii, "npy": ".npy", "npz": ".npz"}[output.format]
    targets = {"image": out_dir / "images" / f"{case}{suffix}"}
    if has_label:
        targets["label"] = out_dir / "labels" / f"{case}{suffix}"
    return targets


def write_case(out_dir: Union[str, Path], case: str, image: Volume, label: Optional[Volume], output: Any,
               training: bool = True, overwrite: bool = False) -> Dict[str, List[str]]:
    """Write one preprocessed case in the pipeline's output format; returns the files by role."""
    targets = case_targets(out_dir, case, output, training, label is not None)
    written: Dict[str, List[str]] = {"image": [], "label": []}
    if output.format == "nnunet":
        # nnU-Net wants one file per channel (_0000, _0001, ...) and the sidecars out of its folders.
        frames = image.array if image.is_4d else [image.array]
        for channel, frame in enumerate(frames):
            target = Path(str(targets["image"]).replace("_0000.nii", f"_{channel:04d}.nii"))
            vol = image.with_stored(frame, image.affine.copy())
            written["image"] += [str(p) for p in write_volume(vol, target, output.dtype, sidecar=False,
                                                              overwrite=overwrite)]
        side = Path(out_dir) / "sidecars" / f"{case}.json"
        write_sidecar(image, side, overwrite=True)
        written["image"].append(str(side))
    else:
        written["image"] += [str(p) for p in write_volume(image, targets["image"], output.dtype, output.slices,
                                                          overwrite=overwrite)]
    if label is not None:
        written["label"] += [str(p) for p in write_volume(label, targets["label"], output.label_dtype,
                                                          output.slices and output.format != "nnunet",
                                                          sidecar=False, overwrite=overwrite, what="label")]
    return written


def write_dataset_json(out_dir: Union[str, Path], name: str, channels: List[str], labels: List[int],
                       n_training: int, gz: bool = True, description: str = "") -> Path:
    """nnU-Net v2's dataset.json (channel names, label values, training count, file ending)."""
    label_names = {"background": 0}
    label_names.update({f"label_{v}": int(v) for v in sorted(set(labels)) if v != 0})
    doc = {"name": name, "description": description,
           "channel_names": {str(i): c for i, c in enumerate(channels)},
           "labels": label_names, "numTraining": int(n_training),
           "file_ending": ".nii.gz" if gz else ".nii"}
    target = Path(out_dir) / "dataset.json"
    write_json(target, doc, overwrite=True)
    return target
