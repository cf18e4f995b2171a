"""What a dataset run adds to its cases besides images (their training targets): labels from a table,
boxes and points, splits, and the files that carry them (labels.csv, boxes.csv, SPLIT/annotations.json, splits.json).

`runner` calls these on the driver; the case jobs only transform each case's boxes (see `boxes`).
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from .atomic import atomic_open, write_json
from .boxes import BOX_FIELDS, BOXES_KEY, BoxOptions, box_rows, coco_document, read_boxes
from .cases import Case, LabelTableOptions, assign_keys, attach_labels, read_label_table
from .errors import MedPrepError
from .preprocess.registry import INDEX_MAP_KEY
from .splits import SplitSpec, apply_split_file, assign_splits, splits_document

def split_cases(cases: List[Case], out_dir: Path, split_file: Optional[Union[str, Path]], split: Optional[SplitSpec],
                rows_by_id: Dict[str, Dict[str, str]], report: Any) -> None:
    """Each case's split from the user's file or a drawn spec, written to splits.json; counted in the report."""
    if split_file:
        apply_split_file(cases, split_file)
    elif split is not None:
        assign_splits(cases, split, rows_by_id)
    if split_file or split is not None:
        method = ({"file": Path(split_file).name} if split_file else
                  {"fractions": split.fractions, "seed": split.seed, "stratify": split.stratify,
                   "group_by": split.group_by})
        write_json(out_dir / "splits.json", splits_document(cases, method), overwrite=True)
    for c in cases:
        report.splits[c.split_name] = report.splits.get(c.split_name, 0) + 1


def attach_annotations(cases: List[Case], options: Optional[LabelTableOptions], boxes: Optional[BoxOptions],
                       report: Any) -> Dict[str, Dict[str, str]]:
    """Labels from the table and boxes from their file, if any; unmatched cases and ids go into the
    report (or stop the run with --require-labels)."""
    if options is None and boxes is None:
        return {}
    rule, names = (options.case_id, options.case_names) if options else (boxes.case_id, boxes.case_names)
    report.identifying_ids = assign_keys(cases, rule, names)
    if boxes is not None:
        found = read_boxes(boxes.path, boxes.id_column, boxes.category_column)
        for c in cases:
            c.boxes = found.get(c.key)
        report.unboxed = [c.case_id for c in cases if c.boxes is None]
    if options is None:
        return {}
    table = read_label_table(options.path, options.id_column, options.label_column)
    match = attach_labels(cases, table)
    report.unlabelled, report.unused_labels = match.unlabelled, match.unused
    if options.require and (match.unlabelled or match.unused):
        what = (f"{len(match.unlabelled)} cases have no label" if match.unlabelled else
                f"{len(match.unused)} labels match no case")
        first = (f"case {match.unlabelled[0]}" if match.unlabelled else
                 f"line {match.unused[0][1]}" if report.identifying_ids else f"id '{match.unused[0][0]}'")
        raise MedPrepError(f"--require-labels: {what} (first: {first})", options.path,
                           f"check --id-column and --case-id (now {options.case_id})")
    return table.rows


def write_boxes(out_dir: Path, cases: List[Case], rows: Dict[str, Dict[str, Any]],
                meta: Dict[str, Dict[str, Any]], report: Any) -> None:
    """boxes.csv (every case's boxes in output pixels and RAS mm) and SPLIT/annotations.json (COCO).

    Cases written by an earlier run give their boxes and shape from their sidecar."""
    per_split: Dict[str, List[Tuple[str, str, List[int], List[Dict[str, Any]]]]] = {}
    table: List[Dict[str, Any]] = []
    for c in cases:
        row = rows[c.case_id]
        if c.boxes is None or row.get("status") not in ("written", "unchanged"):
            continue
        outputs = (row.get("outputs") or "").split(";")
        if c.case_id in meta:
            found, shape = meta[c.case_id]["boxes"], meta[c.case_id]["shape"]
        else:
            side = json.loads((out_dir / next(p for p in outputs if p.endswith(".json"))).read_text())
            found, shape = side[BOXES_KEY], side[INDEX_MAP_KEY]["output_shape_xyz"] if INDEX_MAP_KEY in side else []
        for b in found:
            report.boxes[b["status"]] = report.boxes.get(b["status"], 0) + 1
        table += box_rows(c.case_id, c.split_name, found)
        split_dir = out_dir / c.split_name
        per_split.setdefault(c.split_name, []).append(
            (c.case_id, os.path.relpath(out_dir / outputs[0], split_dir), shape, found))
    with atomic_open(out_dir / "boxes.csv", "w", overwrite=True) as fh:
        writer = csv.DictWriter(fh, fieldnames=BOX_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
    for name, images in per_split.items():
        (out_dir / name).mkdir(exist_ok=True)
        write_json(out_dir / name / "annotations.json", coco_document(images), overwrite=True)


def remove_moved(out_dir: Path, old: Optional[Dict[str, str]], new: Dict[str, Any]) -> None:
    """Files an earlier run wrote for a case that now lives elsewhere (its label or split changed,
    so its class or split folder did): a stale copy would train in the wrong class."""
    if not old:
        return
    kept = set((new.get("outputs") or "").split(";"))
    for name in (old.get("outputs") or "").split(";"):
        path = out_dir / name
        if name and name not in kept and out_dir.resolve() in path.resolve().parents and path.is_file():
            path.unlink()


def write_labels_csv(path: Path, cases: List[Case], rows: Dict[str, Dict[str, Any]]) -> None:
    """labels.csv: each written case's image file, class label and split (what a training loop reads)."""
    with atomic_open(path, "w", overwrite=True) as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["case", "file", "label", "split"])
        for c in cases:
            row = rows[c.case_id]
            if row.get("status") not in ("written", "unchanged"):
                continue
            # A case's outputs start with its image (then its sidecar, label map, QA picture).
            image = (row.get("outputs") or "").split(";")[0]
            writer.writerow([c.case_id, image, c.target if c.target is not None else "", c.split_name])
