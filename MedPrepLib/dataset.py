"""A prepared dataset as a training loop reads it: (array, target) pairs, no PyTorch needed.

`PreparedDataset(out_dir, split="train")` reads the `labels.csv` that `medprep run` writes in every
layout and gives, for each case of the split, its array (a read-only memory map of the `.npy`, so
an epoch reads only the pages a loader touches and worker processes share the page cache) and its
target. It has `__len__` and `__getitem__`, which is all `torch.utils.data.Dataset` asks for: pass
it to a `DataLoader` as it is (wrap the array with `torch.from_numpy(np.array(x))` in `transform`).

Targets: the class index of the case's label (`classes[index]` is the label; when every label is a
whole number the index is that number, as in RSNA's Target 0/1, otherwise labels are numbered in
sorted order, as torchvision's DatasetFolder numbers its folders). Cases without a label are left
out of a labelled dataset unless `keep_unlabelled` (their target is then -1). With boxes (a run
with `--boxes` writes `boxes.csv`), `target="boxes"` (the default then) gives a dict per case:
"boxes", float32 (N, 4) [x0, y0, x1, y1] in output pixels ((N, 6) with z for 3D images), and
"labels", int64 (N,) indices into `box_classes` (what torchvision's detection models take); boxes
dropped by a crop are left out, points have x0 == x1.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from .errors import MedPrepError


def _class_indices(labels: List[str]) -> Dict[str, int]:
    distinct = sorted({lab for lab in labels if lab})
    if distinct and all(lab.isdigit() for lab in distinct):
        return {lab: int(lab) for lab in distinct}
    return {lab: i for i, lab in enumerate(distinct)}


class PreparedDataset:
    """The cases of one split of a `medprep run` output folder (all splits with `split=None`)."""

    def __init__(self, out_dir: Union[str, Path], split: Optional[str] = "train",
                 transform: Optional[Callable[[np.ndarray], Any]] = None,
                 target_transform: Optional[Callable[[Any], Any]] = None, keep_unlabelled: bool = False,
                 target: str = "auto"):
        self.root = Path(out_dir)
        table = self.root / "labels.csv"
        if not table.is_file():
            raise MedPrepError("no labels.csv in the folder", self.root, "give the output folder of `medprep run`")
        with open(table, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        index = _class_indices([r["label"] for r in rows])  # over every split, so indices agree across them
        self.class_to_idx = index
        self.classes = [lab for lab, _ in sorted(index.items(), key=lambda item: item[1])]
        self.rows = [r for r in rows if (split is None or r["split"] == split)
                     and (r["label"] or keep_unlabelled or not index)]
        if not self.rows:
            splits = sorted({r["split"] for r in rows})
            raise MedPrepError(f"the dataset has no case in split '{split}' (it has: {', '.join(splits)})", table)
        self.cases = [r["case"] for r in self.rows]
        self.targets: List[Any] = [index.get(r["label"], -1) for r in self.rows]
        boxes_csv = self.root / "boxes.csv"
        if target not in ("auto", "class", "boxes"):
            raise MedPrepError(f"target must be auto, class or boxes, not '{target}'")
        if target == "boxes" or (target == "auto" and boxes_csv.is_file()):
            if not boxes_csv.is_file():
                raise MedPrepError("no boxes.csv in the folder", self.root, "run with --boxes")
            self.targets = self._boxes(boxes_csv)
        self.transform, self.target_transform = transform, target_transform

    def _boxes(self, path: Path) -> List[Dict[str, np.ndarray]]:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if r["status"] != "dropped"]
        self.box_classes = sorted({r["category"] for r in rows})
        ids = {name: i for i, name in enumerate(self.box_classes)}
        per_case: Dict[str, List[Dict[str, str]]] = {}
        for r in rows:
            per_case.setdefault(r["case"], []).append(r)
        # A 2D image's boxes span its one slice (z 0 to 1): boxes reaching beyond are on 3D images.
        depth = any(float(r["z1"]) > 1 for r in rows)
        names = ("x0", "y0", "z0", "x1", "y1", "z1") if depth else ("x0", "y0", "x1", "y1")
        out = []
        for case in self.cases:
            found = per_case.get(case, [])
            out.append({"boxes": np.array([[float(r[n]) for n in names] for r in found], np.float32
                                          ).reshape(-1, len(names)),
                        "labels": np.array([ids[r["category"]] for r in found], np.int64)})
        return out

    def __len__(self) -> int:
        return len(self.rows)

    def path(self, i: int) -> Path:
        return self.root / self.rows[i]["file"]

    def load(self, i: int) -> np.ndarray:
        path = self.path(i)
        name = path.name.lower()
        if name.endswith(".npy"):
            return np.load(path, mmap_mode="r")
        if name.endswith(".npz"):
            with np.load(path) as data:
                return data["image"]
        if name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            return np.asanyarray(nib.load(str(path)).dataobj)
        raise MedPrepError("unknown image file in labels.csv", path, "write the dataset as npy, npz or NIfTI")

    def __getitem__(self, i: int) -> Tuple[Any, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        array, target = self.load(i), self.targets[i]
        if self.transform is not None:
            array = self.transform(array)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return array, target
