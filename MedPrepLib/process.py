"""One case through a pipeline: read, run the steps, write image, label map and sidecar.

`process_case` is the one path of `medprep preprocess`, of every case of `medprep run` and of the
Slicer panel's Apply (which writes nothing until Save calls `export.write_outputs`), so the three
give the same files for the same input and pipeline.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from .boxes import BOXES_KEY, identity_map, transform_boxes
from .errors import MedPrepError
from .export import OutputPaths, write_outputs
from .preprocess import pipeline as pl
from .preprocess.registry import INDEX_MAP_KEY
from .volume import Volume


@dataclass
class CaseResult:
    image: Volume
    label: Optional[Volume] = None
    boxes: Optional[List[Dict[str, Any]]] = None  # the input's boxes and points where the steps put them
    written: Dict[str, List[str]] = field(default_factory=lambda: {"image": [], "label": [], "qa": []})


def require_statistics(pipeline: pl.Pipeline, statistics: Optional[Dict[int, Dict[str, Any]]], source: str,
                       start: int = 0) -> None:
    """Refuse a pipeline whose dataset-statistics steps have neither values nor statistics: which values
    of which step, and the ways to get them."""
    missing = [i for i in pipeline.statistics_steps() if i >= start and not (statistics or {}).get(i)]
    if not missing:
        return
    step = pipeline.steps[missing[0]]
    fitted = [name for name in step.spec.fitted if getattr(step.params, name) is None]
    sets = " ".join(f"--set {step.spec.name}.{name}=..." for name in fitted)
    raise MedPrepError(
        f"step {missing[0] + 1} '{step.spec.name}' needs dataset statistics ({', '.join(fitted)}) from the "
        "training cases", source,
        f"pass --statistics FILE: the statistics.json of a `medprep run {source}` over the training set, or "
        f"`medprep stats {source} TRAINING_DIR stats.json`; or give the values: {sets}")


def process_case(image: pl.Source, pipeline: pl.Pipeline, paths: Optional[OutputPaths] = None,
                 label: Optional[Volume] = None, statistics: Optional[Dict[int, Dict[str, Any]]] = None,
                 boxes: Optional[Sequence[Dict[str, Any]]] = None, start: int = 0,
                 qa: Optional[Union[str, Path]] = None, original: Optional[pl.Source] = None, title: str = "",
                 overwrite: bool = False, progress: Optional[pl.Progress] = None) -> CaseResult:
    """Run `pipeline` on one case and, if `paths` is given, write it there.

    `image` is a Volume or a function that reads it (then the input is freed as the steps go, unless
    `qa` keeps it for the before/after picture). `label` is a label map on the image's grid; `boxes`
    (see `boxes`) are carried through the spatial steps and recorded in the sidecar. `start` skips the
    steps an image staged by the statistics pass has been through already; `original` then reads the
    input as it was, for the picture `qa` asks for.
    """
    require_statistics(pipeline, statistics, pipeline.name, start)
    before = None
    if qa is not None and original is None:
        before = image = image if isinstance(image, Volume) else image()
    out, out_label = pl.run_pipeline(image, pipeline, label, statistics, start=start, progress=progress)
    del image
    if qa is not None and before is None:
        before = original if isinstance(original, Volume) else original()
    result = CaseResult(out, out_label)
    if boxes is not None:
        result.boxes = transform_boxes(boxes, out.meta.get(INDEX_MAP_KEY) or identity_map(out), out.affine)
        out.meta[BOXES_KEY] = result.boxes
    if paths is not None:
        result.written.update(write_outputs(paths, out, out_label, pipeline.output, overwrite=overwrite))
    if before is not None:
        from .qa import write_qa_png

        drawn = None
        if boxes is not None:
            drawn = (transform_boxes(boxes, identity_map(before), before.affine), result.boxes)
        result.written["qa"].append(str(write_qa_png(before, out, out_label, qa, title=title, boxes=drawn)))
    return result
