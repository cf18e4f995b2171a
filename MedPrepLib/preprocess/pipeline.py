"""Pipelines: an ordered list of validated steps, read from YAML or JSON, saved, replayed, recorded.

File format (YAML or JSON)::

    name: ct-liver
    steps:
      - step: modality_lut
      - step: resample
        spacing: [1.5, 1.5, 1.0]
    output: {format: nifti, dtype: float32}

A bare list is accepted as the steps. Everything is validated when the pipeline is loaded, so a
typo fails before any case is processed. Steps whose parameters come from the training cases
(dataset statistics) get them from a statistics mapping {step index: values}, which
`dataset_statistics.compute_statistics` computes (`fit_case` per training case, `combine` over them)
and `medprep run` stores as statistics.json.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np

from ..errors import MedPrepError
from ..volume import Volume
from .registry import INDEX_MAP_KEY, STEPS, WORLD_MAP_KEY, StepSpec, get_step, make_params

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"
EXPORT_FORMATS = ["nifti", "npy", "npz", "nnunet"]
LAYOUTS = ["files", "classes", "detection"]
DTYPES = ["keep", "float32", "float16", "float64", "int16", "uint16", "int32", "uint8", "int8"]


@dataclass(frozen=True)
class OutputParams:
    format: str = field(default="nifti", metadata={"choices": EXPORT_FORMATS})
    dtype: str = field(default="float32", metadata={"choices": DTYPES,
                                                    "help": "image voxel type; keep: stored type and slope"})
    label_dtype: str = field(default="uint8", metadata={"choices": DTYPES})
    slices: bool = field(default=False, metadata={"help": "npy/npz: one 2D array per slice along z"})
    gz: bool = field(default=True, metadata={"help": "nifti/nnunet: compress as .nii.gz"})
    layout: str = field(default="files", metadata={"choices": LAYOUTS, "help": "files: images/CASE; classes: "
                                                   "SPLIT/LABEL/CASE (torchvision DatasetFolder); detection: "
                                                   "SPLIT/images/CASE with SPLIT/annotations.json (COCO)"})


@dataclass(frozen=True)
class Step:
    spec: StepSpec
    params: Any

    def to_dict(self) -> Dict[str, Any]:
        return {"step": self.spec.name, **dataclasses.asdict(self.params)}


@dataclass(frozen=True)
class Pipeline:
    steps: Tuple[Step, ...]
    name: str = "custom"
    description: str = ""
    output: OutputParams = OutputParams()

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "steps": [s.to_dict() for s in self.steps], "output": dataclasses.asdict(self.output)}

    def digest(self) -> str:
        """A fingerprint of everything that decides the outputs (not the name or description)."""
        body = {"steps": self.to_dict()["steps"], "output": self.to_dict()["output"]}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    def save(self, path: Union[str, Path], overwrite: bool = True) -> None:
        from ..atomic import atomic_open, write_json

        path = Path(path)
        if path.suffix.lower() == ".json":
            write_json(path, self.to_dict(), overwrite=overwrite)
            return
        yaml = _yaml(path)
        with atomic_open(path, "w", overwrite=overwrite) as fh:
            yaml.safe_dump(self.to_dict(), fh, sort_keys=False)

    def statistics_steps(self) -> List[int]:
        """Indices of the steps that need dataset statistics and were not given them explicitly."""
        return [i for i, s in enumerate(self.steps) if s.spec.needs_statistics(s.params)]

    def normalizing_steps(self) -> List[str]:
        """Names of the steps that standardise intensities (z-score, min-max, Nyul, ...)."""
        return [s.spec.name for s in self.steps if s.spec.normalizes]


def _yaml(where: Any):
    try:
        import yaml
    except ImportError:
        raise MedPrepError("YAML pipelines need PyYAML, which is not installed", where,
                           "pip install pyyaml (in Slicer: slicer.util.pip_install('pyyaml')), "
                           "or write the pipeline as JSON") from None
    return yaml


def from_dict(doc: Any, where: Optional[str] = None) -> Pipeline:
    """A validated pipeline from the parsed file contents."""
    if isinstance(doc, list):
        doc = {"steps": doc}
    if not isinstance(doc, dict):
        raise MedPrepError("a pipeline must be a mapping with 'steps' or a list of steps", where)
    unknown = sorted(set(doc) - {"name", "description", "steps", "output"})
    if unknown:
        raise MedPrepError(f"unknown pipeline key '{unknown[0]}'", where,
                           "a pipeline has name, description, steps and output")
    raw_steps = doc.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise MedPrepError("the pipeline has no steps", where, "give 'steps' as a list of {step: NAME, ...}")
    steps = []
    for n, raw in enumerate(raw_steps, 1):
        if isinstance(raw, str):
            raw = {"step": raw}
        if not isinstance(raw, dict) or "step" not in raw:
            raise MedPrepError(f"pipeline step {n} has no 'step' name", where,
                               "write each step as {step: NAME, PARAMETER: VALUE, ...}")
        spec = get_step(str(raw["step"]), where)
        params = {k: v for k, v in raw.items() if k != "step"}
        steps.append(Step(spec, make_params(spec.name, spec.params, params, f"{where or 'pipeline'}, step {n}")))
    output = make_params("output", OutputParams, dict(doc.get("output") or {}), where)
    return Pipeline(tuple(steps), str(doc.get("name") or "custom"), str(doc.get("description") or ""), output)


def list_presets() -> List[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def read_document(path: Union[str, Path]) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MedPrepError(f"cannot read the pipeline file: {exc.strerror}", path) from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return _yaml(path).safe_load(text)
    except ValueError as exc:
        raise MedPrepError(f"the pipeline file is not valid JSON: {exc}", path) from None
    except Exception as exc:  # yaml.YAMLError, without importing yaml at module level
        if type(exc).__module__.startswith("yaml"):
            raise MedPrepError(f"the pipeline file is not valid YAML: {str(exc).splitlines()[0]}", path) from None
        raise


def _parse_value(text: str, where: Optional[str]) -> Any:
    """A command-line value in YAML (or, without PyYAML, JSON) syntax; bare words stay strings."""
    try:
        import yaml
    except ImportError:
        try:
            return json.loads(text)
        except ValueError:
            return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise MedPrepError(f"cannot read the value '{text}'", where, "write it in YAML syntax") from None


def apply_overrides(doc: Any, overrides: Iterable[str], where: Optional[str] = None) -> Any:
    """`STEP.PARAM=VALUE` (VALUE in YAML/JSON syntax) set on every step named STEP, or `output.KEY=VALUE`."""
    doc = copy.deepcopy({"steps": doc} if isinstance(doc, list) else doc)
    for item in overrides:
        key, sep, text = item.partition("=")
        step, dot, param = key.partition(".")
        if not sep or not dot:
            raise MedPrepError(f"cannot read the override '{item}'", where, "write STEP.PARAMETER=VALUE")
        value = _parse_value(text, where)
        if step == "output":
            doc.setdefault("output", {})[param] = value
            continue
        hits = [s for s in doc.get("steps", []) if isinstance(s, dict) and s.get("step") == step]
        if not hits:
            raise MedPrepError(f"the override '{item}' names step '{step}', which the pipeline lacks", where)
        for s in hits:
            s[param] = value
    return doc


def load_pipeline(source: Union[str, Path, Dict[str, Any], List[Any]], overrides: Iterable[str] = ()) -> Pipeline:
    """A pipeline from a file path, a preset name, or an already parsed mapping/list."""
    if isinstance(source, (dict, list)):
        return from_dict(apply_overrides(source, overrides), None)
    path = Path(source)
    if not path.is_file():
        preset = PRESET_DIR / f"{source}.yaml"
        if not preset.is_file():
            raise MedPrepError(f"no pipeline file or preset named '{source}'", None,
                               f"presets: {', '.join(list_presets())}")
        path = preset
    return from_dict(apply_overrides(read_document(path), overrides, str(path)), str(path))


def _with_statistics(step: Step, values: Optional[Dict[str, Any]]) -> Any:
    if not values:
        return step.params
    unset = {k: v for k, v in values.items() if getattr(step.params, k) is None}
    return dataclasses.replace(step.params, **unset)


def check_label_grid(image: Volume, label: Optional[Volume], when: str) -> None:
    if label is None:
        return
    if label.array.shape != image.array.shape[-3:] or not np.allclose(label.affine, image.affine, atol=1e-3):
        raise MedPrepError(f"the label map is not on the image grid {when}",
                           hint=f"label {label.array.shape} vs image {image.array.shape[-3:]}: "
                                "give a label map defined on the image's voxels")


# Display window of the stored/modality values: meaningless once a step has changed intensities.
WINDOW_KEYS = ("WindowCenter", "WindowWidth", "VOILUTFunction")


def _refresh_meta(image: Volume, spec: StepSpec) -> None:
    """Keep the metadata true to the voxels: rescale keys mirror the volume, stale windows go."""
    if "RescaleSlope" in image.meta or "RescaleIntercept" in image.meta:
        image.meta["RescaleSlope"], image.meta["RescaleIntercept"] = image.slope, image.inter
    if not spec.spatial:
        for key in WINDOW_KEYS:
            image.meta.pop(key, None)


# An image, or a function that reads it: then the pipeline holds the only reference to the input,
# and its voxels are freed as soon as a step has replaced them (a caller's argument lives on until
# the call returns).
Source = Union[Volume, Callable[[], Volume]]


def _refuse_colour(image: Volume, step: Step) -> None:
    # Intensity steps compute on one value per voxel: R, G and B taken as one number would give
    # nonsense rather than an error. Steps that only move voxels say so in their spec (`colour`).
    if image.is_rgb and not step.spec.colour:
        raise MedPrepError(f"step '{step.spec.name}' cannot take a colour (RGB) image",
                           hint="colour images take only the steps that move voxels: "
                                + ", ".join(sorted(n for n, s in STEPS.items() if s.colour)))


Progress = Callable[[int, int], None]  # (steps done, steps in all); may raise to stop between steps


def run_steps(image: Source, label: Optional[Volume], steps: Iterable[Tuple[int, Step]],
              statistics: Optional[Dict[int, Dict[str, Any]]] = None,
              progress: Optional[Progress] = None) -> Tuple[Volume, Optional[Volume]]:
    statistics = statistics or {}
    steps = list(steps)
    if not isinstance(image, Volume):
        image = image()
    check_label_grid(image, label, "before preprocessing")
    for done, (index, step) in enumerate(steps):
        if progress:
            progress(done, len(steps))
        _refuse_colour(image, step)
        params = _with_statistics(step, statistics.get(index))
        before = image
        image, label = step.spec.apply(image, label, params)
        if step.spec.spatial:
            track_index_map(before, image)
        _refresh_meta(image, step.spec)
        record = {"step": step.spec.name, "params": dataclasses.asdict(params)}
        image.history.append(record)
        if label is not None:
            label.history.append(copy.deepcopy(record))
            if step.spec.spatial:
                check_label_grid(image, label, f"after step '{step.spec.name}'")
    if progress:
        progress(len(steps), len(steps))
    return image, label


def track_index_map(before: Volume, after: Volume) -> None:
    """Compose into `after.meta` the map from the first input's voxel indices (x, y, z) to `after`'s.

    index_after = inv(affine_after) @ world_map @ affine_before @ index_before: exact for every step
    that resamples, permutes, flips, crops or pads, whatever the interpolation. Boxes and points
    follow the steps through it (see `boxes`); the sidecar records it.
    """
    world = after.meta.pop(WORLD_MAP_KEY, None)
    world = np.eye(4) if world is None else np.asarray(world, float)
    step = np.linalg.inv(after.affine) @ world @ before.affine
    previous = before.meta.get(INDEX_MAP_KEY)
    if previous is None:
        previous = {"input_shape_xyz": list(before.shape_xyz[:3]),
                    "input_affine_ras": np.round(before.affine, 8).tolist(), "index_to_index": np.eye(4).tolist()}
    after.meta[INDEX_MAP_KEY] = dict(previous, index_to_index=(step @ np.asarray(previous["index_to_index"])).tolist(),
                                     output_shape_xyz=list(after.shape_xyz[:3]))


def run_pipeline(image: Source, pipeline: Pipeline, label: Optional[Volume] = None,
                 statistics: Optional[Dict[int, Dict[str, Any]]] = None, start: int = 0,
                 progress: Optional[Progress] = None) -> Tuple[Volume, Optional[Volume]]:
    """Apply every step to `image` (and the spatial ones to `label` on the same grid).

    `statistics` maps a step index to the parameter values the dataset pass computed for it.
    Inputs are not modified; each step appends {"step", "params"} to the outputs' history.
    `image` may be a function that returns the image (see `Source`). `start` skips the steps
    before that index, for an image that has been through them already (see `fit_case`).
    """
    image, label = run_steps(image, label, list(enumerate(pipeline.steps))[start:], statistics, progress)
    image.meta["MedPrepPipeline"] = {"name": pipeline.name, "digest": pipeline.digest()}
    return image, label


def fit_case(image: Source, label: Optional[Volume], pipeline: Pipeline, index: int,
             statistics: Optional[Dict[int, Dict[str, Any]]] = None,
             keep: Optional[Callable[[Volume, Optional[Volume]], None]] = None) -> Any:
    """One training case's contribution to the statistics of step `index` (the steps before it applied).

    `keep`, if given, receives the image and label as the steps before `index` left them, so that
    the second pass can start there (`run_pipeline(..., start=index)`) instead of redoing them.
    """
    image, label = run_steps(image, label, enumerate(pipeline.steps[:index]), statistics)
    if keep is not None:
        keep(image, label)
    step = pipeline.steps[index]
    _refuse_colour(image, step)
    return step.spec.fit(image, label, _with_statistics(step, (statistics or {}).get(index)))


def combine(pipeline: Pipeline, index: int, parts: List[Any]) -> Dict[str, Any]:
    if not parts:
        raise MedPrepError(f"step '{pipeline.steps[index].spec.name}' needs dataset statistics but no "
                           "training case was processed", hint="check the training split")
    step = pipeline.steps[index]
    return step.spec.combine(parts, step.params)


def save_statistics(path: Union[str, Path], pipeline: Pipeline, statistics: Dict[int, Dict[str, Any]],
                    training_cases: List[str], extra: Optional[Dict[str, Any]] = None) -> None:
    """Write the statistics with the training cases they come from (and `extra` bookkeeping)."""
    from ..atomic import write_json

    doc = {"pipeline": pipeline.digest(), "training_cases": sorted(training_cases),
           "steps": {str(i): {"step": pipeline.steps[i].spec.name, "values": v} for i, v in statistics.items()}}
    doc.update(extra or {})
    write_json(path, doc, overwrite=True)


def load_statistics(path: Union[str, Path], pipeline: Pipeline) -> Dict[int, Dict[str, Any]]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        steps = {int(k): v for k, v in doc["steps"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise MedPrepError("cannot read the statistics file", path,
                           "give a statistics.json written by `medprep run`") from None
    out = {}
    for index in pipeline.statistics_steps():
        entry = steps.get(index)
        if not entry or entry.get("step") != pipeline.steps[index].spec.name:
            raise MedPrepError(f"the statistics file has no values for step {index + 1} "
                               f"'{pipeline.steps[index].spec.name}'", path,
                               "compute it with `medprep run` on this pipeline")
        out[index] = entry["values"]
    return out
