"""Boxes and points (landmarks) on the input images, carried through every spatial step.

Read from a CSV/TSV table (one row per box; RSNA style `x,y,width,height`, `x0,y0,w,h`, or
corners `x0,y0,x1,y1` / `xmin,ymin,xmax,ymax`; 3D with `z,depth` or `z0,z1`; a point when only
`x,y[,z]` are given or a row leaves the extent empty; with `img_shape_x,img_shape_y` columns the
coordinates are in pixels of a resized copy of that size) or a COCO JSON file (`bbox` = [x, y,
width, height], the image's `file_name` stem as the case id). Coordinates are continuous pixel
coordinates: pixel i spans [i, i + 1) along its axis, as in RSNA's and COCO's boxes.

The pipeline composes, step by step, the map from the input's voxel indices to the output's
(`preprocess.pipeline.track_index_map`): every spatial step resamples, permutes, crops or pads
(world positions kept, so the two grids give the map) or registers (the step declares its world
map). A box becomes the axis-aligned box of its mapped corners, which is also the bounding box of
the mapped region (an affine map takes the box's corners to the extreme points of its image).
A box cut by the output's edge is clipped (status "clipped"); one wholly outside is "dropped".
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import MedPrepError

# Column sets recognised, first match wins: (lo columns, hi or size columns, "size" | "corner").
_XY_FORMS = [(("x", "y"), ("width", "height"), "size"), (("x0", "y0"), ("w", "h"), "size"),
             (("x", "y"), ("w", "h"), "size"), (("xmin", "ymin"), ("width", "height"), "size"),
             (("x0", "y0"), ("x1", "y1"), "corner"), (("xmin", "ymin"), ("xmax", "ymax"), "corner")]
_Z_FORMS = [("z", "depth", "size"), ("z", "d", "size"), ("z0", "d", "size"), ("z0", "z1", "corner"),
            ("zmin", "zmax", "corner")]


@dataclass
class BoxOptions:
    """Where a run's boxes and points come from (`--boxes`), and how their ids name cases."""

    path: Path
    id_column: str = ""                 # CSV: the case id column (COCO: the image file name's stem)
    category_column: str = ""           # CSV: the box's class; "object" without one
    case_id: str = "stem"               # see cases.CASE_ID_RULES
    case_names: str = "auto"


@dataclass
class Box:
    lo: Tuple[float, ...]                 # x, y[, z] of the box's low corner (or the point)
    hi: Tuple[float, ...]                 # its high corner; equal to lo for a point
    category: str = "object"
    drawn_on: Optional[Tuple[float, float]] = None  # (width, height) of the resized copy it was drawn on

    @property
    def is_point(self) -> bool:
        return self.lo == self.hi


def _number(row: Dict[str, str], column: str, line: int, path: Path) -> Optional[float]:
    text = row.get(column, "")
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise MedPrepError(f"line {line}: column '{column}' is not a number ('{text}')", path) from None


def read_boxes(path: Union[str, Path], id_column: str = "", category_column: str = "") -> Dict[str, List[Box]]:
    """Boxes and points per case id; an id whose rows hold no coordinates has an empty list."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return _read_coco(path)
    from .cases import read_table_rows

    columns, rows = read_table_rows(path)
    lower = {c.lower(): c for c in columns}
    if id_column not in columns:
        raise MedPrepError(f"the boxes table has no column '{id_column}' (it has: {', '.join(columns)})", path,
                           "name its case id column with --id-column")
    xy = next(((lo, hi, kind) for lo, hi, kind in _XY_FORMS if all(c in lower for c in lo + hi)), None)
    if xy is None and not ("x" in lower and "y" in lower):
        raise MedPrepError(f"the boxes table has no box columns (it has: {', '.join(columns)})", path,
                           "give x,y,width,height or x0,y0,x1,y1 (or x,y for points)")
    z = next(((lo, hi, kind) for lo, hi, kind in _Z_FORMS if lo in lower and hi in lower), None)
    out: Dict[str, List[Box]] = {}
    for line, row in rows:
        key = row.get(id_column, "")
        if key:
            box = _box_of(row, line, path, lower, xy, z, category_column)
            out.setdefault(key, []).extend([box] if box else [])
    return out


def _box_of(row: Dict[str, str], line: int, path: Path, lower: Dict[str, str], xy: Any, z: Any,
            category_column: str) -> Optional[Box]:
    """One row's box or point; None for a row without coordinates (RSNA: an image without pneumonia)."""
    def get(name: str) -> Optional[float]:
        return _number(row, lower[name], line, path) if name in lower else None

    (lx, ly), (hx, hy), kind = xy or (("x", "y"), ("", ""), "point")
    values = [get(lx), get(ly), get(hx), get(hy)]
    if values[0] is None or values[1] is None:
        return None  # a row without coordinates (RSNA: an image without pneumonia)
    if values[2] is None and values[3] is None:  # coordinates without an extent: a point
        z0 = get(z[0]) if z is not None else get("z")
        lo = hi = (values[0], values[1]) + ((z0,) if z0 is not None else ())
    else:
        if values[2] is None or values[3] is None:
            raise MedPrepError(f"line {line}: the box has only one of '{hx}' and '{hy}'", path)
        x0, y0, a, b = values  # type: ignore[misc]
        lo, hi = (x0, y0), ((x0 + a, y0 + b) if kind == "size" else (a, b))
        if z is not None and get(z[0]) is not None and get(z[1]) is not None:
            z0, c = get(z[0]), get(z[1])
            lo, hi = lo + (z0,), hi + ((z0 + c) if z[2] == "size" else c,)  # type: ignore[operator]
        if any(h < v for v, h in zip(lo, hi)):
            raise MedPrepError(f"line {line}: the box has a negative size", path)
    drawn_on = (get("img_shape_x"), get("img_shape_y"))
    category = row.get(category_column, "") if category_column else ""
    return Box(tuple(lo), tuple(hi), category or "object",  # type: ignore[arg-type]
               drawn_on if None not in drawn_on else None)  # type: ignore[arg-type]


def _read_coco(path: Path) -> Dict[str, List[Box]]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        images = {im["id"]: Path(im["file_name"]).name for im in doc["images"]}
        names = {c["id"]: c.get("name", str(c["id"])) for c in doc.get("categories", [])}
        out: Dict[str, List[Box]] = {_stem(n): [] for n in images.values()}
        for ann in doc.get("annotations", []):
            x, y, w, h = (float(v) for v in ann["bbox"])
            out[_stem(images[ann["image_id"]])].append(
                Box((x, y), (x + w, y + h), str(names.get(ann.get("category_id"), "object"))))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MedPrepError(f"cannot read the COCO file ({type(exc).__name__}: {exc})", path,
                           "give a COCO JSON with images, annotations (bbox) and categories") from None
    return out


def _stem(name: str) -> str:
    from .cases import DICOM_SUFFIX_RE, NIFTI_RE

    stem = DICOM_SUFFIX_RE.sub("", NIFTI_RE.sub("", name))
    return stem.rsplit(".", 1)[0] if stem.lower().endswith((".png", ".jpg", ".jpeg", ".npy")) else stem


def transform_boxes(boxes: Sequence[Box], index_map: Dict[str, Any], out_affine: np.ndarray) -> List[Dict[str, Any]]:
    """Each box in the output's pixels (x0, y0, z0, x1, y1, z1) and world (RAS mm), with its status."""
    m = np.asarray(index_map["index_to_index"], float)
    in_shape = [float(v) for v in index_map["input_shape_xyz"]] + [1.0] * 3
    out_shape = np.array([float(v) for v in index_map["output_shape_xyz"]] + [1.0] * 3)[:3]
    results = []
    for box in boxes:
        lo, hi = list(box.lo), list(box.hi)
        if box.drawn_on:  # drawn on a resized copy: back to the input's pixels
            for axis in range(2):
                scale = in_shape[axis] / box.drawn_on[axis]
                lo[axis], hi[axis] = lo[axis] * scale, hi[axis] * scale
        if len(lo) == 2:  # a 2D box spans the image's depth (one slice for a radiograph)
            lo, hi = lo + [0.0], hi + ([in_shape[2]] if not box.is_point else [0.5])
            if box.is_point:
                lo[2] = 0.5
        corners = np.array(list(itertools.product(*zip(lo, hi))), float)
        # Pixel i spans [i, i + 1): its centre, where the index maps are exact, is at i + 0.5.
        mapped = (m[:3, :3] @ (corners - 0.5).T).T + m[:3, 3] + 0.5
        new_lo, new_hi = mapped.min(axis=0), mapped.max(axis=0)
        if box.is_point:
            inside = bool(np.all(new_lo >= 0) and np.all(new_lo <= out_shape))
            status = "kept" if inside else "dropped"
        else:
            c_lo, c_hi = np.clip(new_lo, 0, out_shape), np.clip(new_hi, 0, out_shape)
            planar = out_shape[2] <= 1  # a 2D output: only x and y decide
            axes = 2 if planar else 3
            empty = bool(np.any(c_hi[:axes] - c_lo[:axes] <= 0))
            cut = not np.allclose(np.r_[c_lo, c_hi][:], np.r_[new_lo, new_hi], atol=1e-6)
            status = "dropped" if empty else "clipped" if cut else "kept"
            new_lo, new_hi = c_lo, c_hi
        world = (out_affine[:3, :3] @ (np.stack([new_lo, new_hi]) - 0.5).T).T + out_affine[:3, 3]
        results.append({"category": box.category, "kind": "point" if box.is_point else "box", "status": status,
                        "pixels": np.round(np.r_[new_lo, new_hi], 4).tolist(),
                        "ras_mm": np.round(world.ravel(), 4).tolist()})
    return results


def identity_map(image: Any) -> Dict[str, Any]:
    """The index map of a pipeline without spatial steps."""
    shape = list(image.shape_xyz[:3])
    return {"input_shape_xyz": shape, "output_shape_xyz": shape, "index_to_index": np.eye(4).tolist()}


BOXES_KEY = "MedPrepBoxes"  # a case's boxes and points in its sidecar, beside the transform that placed them
BOX_FIELDS = ["case", "split", "category", "kind", "status", "x0", "y0", "z0", "x1", "y1", "z1",
              "x0_ras_mm", "y0_ras_mm", "z0_ras_mm", "x1_ras_mm", "y1_ras_mm", "z1_ras_mm"]


def box_rows(case: str, split: str, boxes: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """boxes.csv rows of one case: output pixels (edges: pixel i spans [i, i + 1)) and world corners."""
    rows = []
    for b in boxes:
        row = {"case": case, "split": split, "category": b["category"], "kind": b["kind"], "status": b["status"]}
        row.update(zip(BOX_FIELDS[5:11], b["pixels"]))
        row.update(zip(BOX_FIELDS[11:], b["ras_mm"]))
        rows.append(row)
    return rows


def coco_document(images: List[Tuple[str, str, List[int], List[Dict[str, Any]]]]) -> Dict[str, Any]:
    """COCO detection JSON for (case, file name, output shape xyz, boxes) of one split; dropped boxes left out.

    bbox is [x, y, width, height] in output pixels; a point is a keypoint [x, y, 2] with an empty bbox.
    """
    names = sorted({b["category"] for _, _, _, boxes in images for b in boxes})
    categories = [{"id": i, "name": n} for i, n in enumerate(names, 1)]
    ids = {n: i for i, n in enumerate(names, 1)}
    doc: Dict[str, Any] = {"images": [], "annotations": [], "categories": categories}
    for image_id, (case, file_name, shape, boxes) in enumerate(images, 1):
        image = {"id": image_id, "file_name": file_name, "case": case, "width": shape[0], "height": shape[1]}
        if len(shape) > 2 and shape[2] > 1:
            image["depth"] = shape[2]
        doc["images"].append(image)
        for b in boxes:
            if b["status"] == "dropped":
                continue
            x0, y0, z0, x1, y1, z1 = b["pixels"]
            ann = {"id": len(doc["annotations"]) + 1, "image_id": image_id, "category_id": ids[b["category"]],
                   "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
                   "clipped": b["status"] == "clipped"}
            if b["kind"] == "point":
                ann.update(keypoints=[x0, y0, 2], num_keypoints=1)
            if image.get("depth"):
                ann["bbox3d"] = [x0, y0, z0, x1 - x0, y1 - y0, z1 - z0]
            doc["annotations"].append(ann)
    return doc
