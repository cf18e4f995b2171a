"""Writing preprocessed cases: NIfTI, NumPy (.npy/.npz, 3D or 2D slices, channels first) and the
nnU-Net / Medical Segmentation Decathlon layout (imagesTr, labelsTr, imagesTs, dataset.json).

Every image gets a JSON sidecar with its provenance (the pipeline steps from `volume.history`);
NumPy outputs also carry their geometry there (affines, spacing, orientation), since .npy has no header.

nnU-Net v2 picks its intensity normalisation from each channel's name in dataset.json
(nnunetv2/preprocessing/normalization/map_channel_name_to_normalization.py, names compared
case-insensitively): "CT" is its CT scheme (foreground percentiles, mean and std of the training
set), "noNorm" none at all, "rescale_to_0_1" and "rgb_to_0_1" rescaling, anything else per-image
z-score. A channel is named "noNorm" when the pipeline has already standardised the intensities,
and by its modality (CT, MR, ...) otherwise.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .atomic import atomic_open, write_json
from .errors import MedPrepError
from .labels import label_volume
from .nifti import write_nifti
from .sidecar import write_sidecar
from .volume import Volume, rgb_channels

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
    if dtype == "keep" or (volume.is_rgb and dtype == "uint8"):
        return volume
    if volume.is_rgb:
        # NIfTI's only colour type is RGB24; a float R, G, B would be read back as three grey frames.
        raise MedPrepError(f"a colour (RGB) image cannot be written as {dtype}: its values are uint8 R, G, B",
                           hint="set output.dtype to keep or uint8 for colour images "
                                "(the nnU-Net layout writes R, G and B as separate grey channels of any dtype)")
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
    """(C, z, y, x): a 3D volume is one channel, a 4D one has its time points as channels, a colour
    one R, G and B."""
    if array.dtype.names:
        return np.stack(rgb_channels(array))
    return array if array.ndim == 4 else array[np.newaxis]


def _geometry(volume: Volume) -> Dict[str, Any]:
    """Where the voxels of a channels-first array are: what a loader needs to put them back in space.

    `affine_ras` maps NIfTI voxel indices (x, y, z) to RAS millimetres; `array_affine_ras` maps the
    array's own spatial indices ((z, y, x), or (y, x, 0) for one slice) to RAS, which is the affine
    MONAI (MetaTensor) and TorchIO (ScalarImage) take together with the array as it is stored.
    """
    import nibabel as nib

    flat = volume.array.shape[-3] == 1
    # array axis order -> NIfTI index order: (z, y, x) reversed, or for one slice (y, x, z).
    columns = [1, 0, 2] if flat else [2, 1, 0]
    array_affine = volume.affine.copy()
    array_affine[:, :3] = volume.affine[:, columns]
    return {"affine_ras": np.round(volume.affine, 6).tolist(),
            "array_affine_ras": np.round(array_affine, 6).tolist(),
            "spacing_xyz": list(volume.spacing),
            "orientation_xyz": "".join(nib.aff2axcodes(volume.affine)),
            "axes": "channel, y, x" if flat else "channel, z, y, x"}


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


@dataclass(frozen=True)
class OutputPaths:
    """Where one case's outputs go. The image's type comes from its suffix; the sidecar goes beside
    the image (NAME.json) unless `sidecar` puts it elsewhere, and then also carries the geometry.
    `channels`: nnU-Net's one file per channel, the image named CASE_0000 (channel 0)."""
    image: Path
    label: Optional[Path] = None
    sidecar: Optional[Path] = None
    channels: bool = False


def case_targets(out_dir: Union[str, Path], case: str, output: Any, training: bool,
                 has_label: bool, split: str = "", target: Optional[str] = None) -> OutputPaths:
    """Where a dataset case goes, for `output` (pipeline OutputParams).

    The classes layout puts the image in SPLIT/LABEL/ (what torchvision's DatasetFolder reads), its
    sidecar in sidecars/; a case without a class label goes to unlabelled/. The detection layout
    puts it in SPLIT/images/ (SPLIT/annotations.json holds the boxes), its sidecar in sidecars/.
    """
    out_dir = Path(out_dir)
    nii = ".nii.gz" if output.gz else ".nii"
    if output.format == "nnunet":
        folder = "Tr" if training and has_label else "Ts"
        return OutputPaths(out_dir / f"images{folder}" / f"{case}_0000{nii}",
                           out_dir / f"labels{folder}" / f"{case}{nii}" if has_label else None,
                           out_dir / "sidecars" / f"{case}.json", channels=True)
    suffix = {"nifti": nii, "npy": ".npy", "npz": ".npz"}[output.format]
    label = out_dir / "labels" / f"{case}{suffix}" if has_label else None
    layout = getattr(output, "layout", "files")
    if layout == "detection":
        image = out_dir / (split or ("train" if training else "test")) / "images" / f"{case}{suffix}"
    elif layout == "classes":
        folder = out_dir / (split or ("train" if training else "test")) / _folder_name(target) if target \
            else out_dir / "unlabelled"
        image = folder / f"{case}{suffix}"
    else:
        return OutputPaths(out_dir / "images" / f"{case}{suffix}", label)
    return OutputPaths(image, label, out_dir / "sidecars" / f"{case}.json")


def _folder_name(label: str) -> str:
    """A class label as a folder name: safe on any file system, distinct labels kept distinct."""
    safe = re.sub(r"[^A-Za-z0-9._ -]+", "_", label).strip(" .") or "_"
    return safe if safe == label else f"{safe}-{hashlib.sha256(label.encode()).hexdigest()[:6]}"


def write_outputs(paths: OutputPaths, image: Volume, label: Optional[Volume], output: Any,
                  overwrite: bool = False) -> Dict[str, List[str]]:
    """Write one processed case (image, its sidecar, and the label map if any) to `paths`, with the
    voxel types of `output` (pipeline OutputParams); returns the files written, by role.

    The one writer of `medprep preprocess`, `medprep run` and the Slicer panel's Save.
    """
    if label is not None and paths.label is None:
        raise MedPrepError("the case has a label map but no file name was given for it",
                           hint="give a label output path")
    written: Dict[str, List[str]] = {"image": [], "label": []}
    if paths.channels:
        # nnU-Net wants one file per channel (_0000, _0001, ...) and the sidecars out of its folders;
        # a colour image is three grey channels, R, G and B.
        frames = rgb_channels(image.array) if image.is_rgb else image.array if image.is_4d else [image.array]
        for channel, frame in enumerate(frames):
            target = Path(str(paths.image).replace("_0000.nii", f"_{channel:04d}.nii"))
            vol = image.with_stored(frame, image.affine.copy())
            written["image"] += [str(p) for p in write_volume(vol, target, output.dtype, sidecar=False,
                                                              overwrite=overwrite)]
    else:
        written["image"] += [str(p) for p in write_volume(image, paths.image, output.dtype, output.slices,
                                                          sidecar=paths.sidecar is None, overwrite=overwrite)]
    if paths.sidecar is not None:
        side = image
        if paths.channels and image.is_rgb:
            # The sidecar says the channel files are R, G and B, whatever the input's own sidecar said.
            side = image.with_stored(image.array, image.affine.copy())
            side.meta["ColorImage"] = "RGB24"
        if not paths.channels:
            side = image.with_stored(image.array, image.affine.copy())
            side.meta["MedPrepGeometry"] = _geometry(image)
        try:
            write_sidecar(side, paths.sidecar, overwrite=overwrite)
        except FileExistsError as exc:
            raise MedPrepError("output exists", str(exc), "use --overwrite to replace it") from None
        written["image"].append(str(paths.sidecar))
    if label is not None:
        written["label"] += [str(p) for p in write_volume(label, paths.label, output.label_dtype,
                                                          output.slices and not paths.channels,
                                                          sidecar=False, overwrite=overwrite, what="label")]
    return written


# ---------------------------------------------------------------- nnU-Net v2 datasets

NNUNET_NO_NORM = "noNorm"
# nnU-Net's names for the channels of a colour image (its dataset_format.md, natural images).
NNUNET_RGB = ["R", "G", "B"]
_DATASET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_CHANNEL_FILE_RE = re.compile(r"_\d{4}\.nii(\.gz)?$")


@dataclass(frozen=True)
class DatasetInfo:
    """What a user says about a dataset that the images do not: its name, what the label values
    are (1, 2, ... in order) and the modality of each channel (one for all, or one per channel)."""
    name: Optional[str] = None
    label_names: Tuple[str, ...] = ()
    modalities: Tuple[str, ...] = ()


def nnunet_dataset_dir(out_dir: Union[str, Path], dataset_id: int, name: str) -> Path:
    """OUT/DatasetNNN_Name, the folder nnU-Net v2 looks for under nnUNet_raw."""
    if not 1 <= dataset_id <= 999:
        raise MedPrepError(f"the nnU-Net dataset id must be 1 to 999, got {dataset_id}",
                           hint="nnU-Net names datasets DatasetNNN_Name with a three-digit id")
    if not _DATASET_NAME_RE.match(name):
        raise MedPrepError(f"the dataset name '{name}' is not usable in a folder name",
                           hint="use letters, digits, '-' and '_' (e.g. Liver)")
    return Path(out_dir) / f"Dataset{dataset_id:03d}_{name}"


def parse_names(text: Optional[str], what: str, unique: bool = True) -> Tuple[str, ...]:
    """A comma-separated command-line list (label names, modalities); empty entries are refused."""
    if not text:
        return ()
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise MedPrepError(f"{what} has an empty entry: '{text}'", hint="separate the names by single commas")
    if unique and len(set(n.casefold() for n in names)) != len(names):
        raise MedPrepError(f"{what} names one twice: '{text}'")
    return names


def channel_names(pipeline: Any, n_channels: int, found: Sequence[str],
                  info: DatasetInfo, colour: bool = False) -> Tuple[List[str], List[str]]:
    """(dataset.json channel names, warnings) for `pipeline`'s outputs.

    `found` is the modality the images carry (DICOM Modality, or the sidecar's), "" when unknown.
    `colour`: the channels are R, G and B, named so unless --modality names them.
    """
    warnings: List[str] = []
    given = list(info.modalities)
    if len(given) == 1:
        given *= n_channels
    if given and len(given) != n_channels:
        raise MedPrepError(f"--modality names {len(given)} channels but the images have {n_channels}",
                           hint="give one modality for all channels or one per channel")
    if colour and not given:
        return list(NNUNET_RGB), warnings
    modalities = given or [m or "" for m in (list(found) or [""])[:1] * n_channels]
    normalizing = pipeline.normalizing_steps()
    if normalizing:
        return [NNUNET_NO_NORM] * n_channels, warnings
    if not all(modalities):
        warnings.append("the modality of the images is unknown (no DICOM header or JSON sidecar says it): "
                        "dataset.json names the channel 'image', for which nnU-Net z-scores each image; "
                        "pass --modality CT (or MR, ...) to let nnU-Net choose its normalisation for it")
    return [m or "image" for m in modalities], warnings


def label_table(values: Iterable[int], names: Sequence[str]) -> Tuple[Dict[str, int], List[str]]:
    """dataset.json "labels": background 0, then 1..N named by `names` (else label_N), consecutive
    as nnU-Net requires even where a value occurs in no case; and warnings."""
    values = sorted(set(int(v) for v in values) - {0})
    top = max(values + [len(names)])
    table = {"background": 0}
    unnamed = []
    for v in range(1, top + 1):
        name = names[v - 1] if v <= len(names) else f"label_{v}"
        if v > len(names) and names:
            unnamed.append(v)
        table[name] = v
    warnings = []
    if unnamed:
        warnings.append(f"label value(s) {', '.join(map(str, unnamed))} found in the label maps have no name in "
                        f"--label-names ({len(names)} given): dataset.json calls them label_N")
    absent = [names[v - 1] for v in range(1, len(names) + 1) if v not in values]
    if absent and values:
        warnings.append(f"no label map holds {', '.join(absent)} (--label-names), listed in dataset.json anyway")
    return table, warnings


def unlabelled_training(cases: Iterable[Any]) -> List[str]:
    """Warnings for training cases without a label map: the nnU-Net layout puts them in imagesTs."""
    missing = [c.case_id for c in cases if c.training and c.label is None]
    if not missing:
        return []
    shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
    return [f"{len(missing)} training image(s) have no label map and go to imagesTs, not imagesTr: {shown}; "
            "give their labels (--labels DIR, files named like the images, optionally with _seg) "
            "or mark them as test cases (--split)"]


def write_dataset_json(out_dir: Union[str, Path], name: str, channels: List[str], labels: Dict[str, int],
                       n_training: int, gz: bool = True, description: str = "",
                       extra: Optional[Dict[str, Any]] = None) -> Path:
    """nnU-Net v2's dataset.json (channel names, labels, training count, file ending); `extra` goes
    under "medprep" (nnU-Net reads only its own keys)."""
    doc = {"name": name, "description": description,
           "channel_names": {str(i): c for i, c in enumerate(channels)},
           "labels": labels, "numTraining": int(n_training),
           "file_ending": ".nii.gz" if gz else ".nii"}
    if extra:
        doc["medprep"] = extra
    target = Path(out_dir) / "dataset.json"
    write_json(target, doc, overwrite=True)
    return target


def check_one_channel_kind(kinds: Dict[str, bool]) -> bool:
    """The one kind (colour: True) of every case in `kinds` {case: colour}; a mix is refused, since an
    nnU-Net dataset has the same channels in every case."""
    colour = [c for c, k in kinds.items() if k]
    grey = [c for c, k in kinds.items() if not k]
    if colour and grey:
        raise MedPrepError(f"case '{colour[0]}' is a colour (RGB) image but case '{grey[0]}' is grey-value: "
                           "an nnU-Net dataset has the same channels in every case",
                           hint="process colour and grey-value series as separate datasets (separate runs)")
    return bool(colour)


def write_nnunet_dataset_json(out_dir: Union[str, Path], pipeline: Any, cases: Sequence[Any],
                              results: Dict[str, Dict[str, Any]], info: Optional[DatasetInfo] = None) -> List[str]:
    """dataset.json for the cases now in `out_dir` (nnU-Net layout); returns warnings.

    `results` holds what this run's case jobs returned ("labels", "modality", "outputs"); what the
    cases skipped as unchanged had (label values, modality) comes from the previous dataset.json.
    """
    info = info or DatasetInfo()
    json_path = Path(out_dir) / "dataset.json"
    try:
        old = json.loads(json_path.read_text(encoding="utf-8")) if json_path.is_file() else {}
    except ValueError:
        old = {}
    old_extra = old.get("medprep") or {}
    values = set(old_extra.get("label_values", []))
    found = list(old_extra.get("modalities", []))
    n_channels = int(old_extra.get("channels", 1))
    kinds = {case: bool(r.get("colour")) for case, r in sorted(results.items())}
    # Cases skipped as unchanged are of the kind the previous dataset.json recorded.
    kinds.update({c.case_id: bool(old_extra.get("colour", False)) for c in cases if c.case_id not in results})
    colour = check_one_channel_kind(kinds)
    for r in results.values():
        values.update(r["labels"])
        if r.get("modality") and not found:
            found = [r["modality"]]
        n_channels = sum(1 for p in r["outputs"] if _CHANNEL_FILE_RE.search(str(p))) or n_channels
    channels, warnings = channel_names(pipeline, n_channels, found, info, colour)
    labels, label_warnings = label_table(values, info.label_names)
    n_training = sum(1 for c in cases if c.training and c.label is not None)
    modalities = list(info.modalities) or found
    extra = {"pipeline": pipeline.name, "pipeline_digest": pipeline.digest(), "channels": n_channels, "colour": colour,
             "modalities": modalities, "normalized_by": pipeline.normalizing_steps(),
             "label_values": sorted(values)}
    description = pipeline.description
    if extra["normalized_by"]:
        description = (f"{description}; " if description else "") + \
            f"intensities already standardised by MedPrep ({', '.join(extra['normalized_by'])}): channels noNorm"
    write_dataset_json(out_dir, info.name or pipeline.name, channels, labels, n_training, pipeline.output.gz,
                       description, extra)
    return warnings + label_warnings
