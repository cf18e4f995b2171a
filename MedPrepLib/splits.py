"""Splitting a dataset's cases into train / val / test: from a spec or from the user's own file.

A spec (`train=0.8,val=0.1,test=0.1`) is drawn reproducibly from a seed, optionally stratified by
class label (each label's cases are split in the same proportions) and grouped (all cases of one
group, e.g. one patient's images, land in the same split, so no patient is in two). The order is
a hash of seed and group, not Python's random module, so one seed gives the same split on any
version. Dataset statistics come from the `train` split only.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from .cases import Case
from .errors import MedPrepError

SPEC_RE = re.compile(r"^\s*[A-Za-z][A-Za-z0-9_-]*\s*=\s*[0-9.]+\s*(,\s*[A-Za-z][A-Za-z0-9_-]*\s*=\s*[0-9.]+\s*)*$")
# How split files name splits -> the names used here.
SPLIT_ALIASES = {"tr": "train", "training": "train", "ts": "test", "testing": "test", "validation": "val",
                 "valid": "val"}


@dataclass
class SplitSpec:
    fractions: Dict[str, float]          # split name -> share of the groups, in the order given
    seed: int = 0
    stratify: Optional[str] = None       # "label" (the class label) or a labels table column
    group_by: Optional[str] = None       # "patient", "study" or a labels table column


def is_split_spec(text: str) -> bool:
    return bool(SPEC_RE.match(text)) and not Path(text).is_file()


def parse_split_spec(text: str, seed: int = 0, stratify: Optional[str] = None,
                     group_by: Optional[str] = None) -> SplitSpec:
    fractions: Dict[str, float] = {}
    for part in text.split(","):
        name, value = (p.strip() for p in part.split("=", 1))
        name = SPLIT_ALIASES.get(name.lower(), name)
        try:
            fraction = float(value)
        except ValueError:
            raise MedPrepError(f"--split: '{value}' is not a number", hint="write e.g. train=0.8,val=0.1,test=0.1") \
                from None
        if fraction < 0 or name in fractions:
            raise MedPrepError(f"--split: '{part.strip()}' is negative or repeated",
                               hint="write e.g. train=0.8,val=0.1,test=0.1")
        fractions[name] = fraction
    if "train" not in fractions or abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise MedPrepError(f"--split {text}: the shares must include train and add up to 1",
                           hint="write e.g. train=0.8,val=0.1,test=0.1")
    return SplitSpec(fractions, seed, stratify, group_by)


def _dicom_field(case: Case, keyword: str) -> str:
    return str(case.series.first.get(keyword, "") or "") if case.series is not None else ""


def _column(case: Case, rows: Dict[str, Dict[str, str]], column: str, option: str) -> str:
    if rows and column not in next(iter(rows.values())):
        raise MedPrepError(f"{option} {column}: the labels table has no such column",
                           hint="give patient, study, label or a column of the labels table")
    return rows.get(case.key, {}).get(column, "")


def group_of(case: Case, group_by: Optional[str], rows: Dict[str, Dict[str, str]]) -> str:
    """The group a case must share its split with (itself when not grouped)."""
    if not group_by:
        return "case:" + case.case_id
    if group_by in ("patient", "study"):
        # Outside DICOM the labels table's id (one per patient in RSNA-style tables) stands for it.
        value = _dicom_field(case, "PatientID" if group_by == "patient" else "StudyInstanceUID")
        value = value or case.key
    else:
        value = _column(case, rows, group_by, "--group-by")
    return (group_by + ":" + value) if value else "case:" + case.case_id


def _stratum(case: Case, stratify: Optional[str], rows: Dict[str, Dict[str, str]]) -> str:
    if not stratify:
        return ""
    if stratify == "label":
        return case.target or ""
    return _column(case, rows, stratify, "--stratify")


def _shares(n: int, fractions: Dict[str, float]) -> List[Tuple[str, int]]:
    """n items shared out by the largest remainder method (the counts add up to n)."""
    exact = [(name, n * f) for name, f in fractions.items()]
    counts = {name: int(x) for name, x in exact}
    order = sorted(exact, key=lambda item: (-(item[1] - int(item[1])), list(fractions).index(item[0])))
    for name, _ in order[: n - sum(counts.values())]:
        counts[name] += 1
    return [(name, counts[name]) for name in fractions]


def assign_splits(cases: List[Case], spec: SplitSpec, rows: Optional[Dict[str, Dict[str, str]]] = None) -> None:
    """Set every case's split (and `training`) from `spec`: reproducible, stratified, grouped."""
    rows = rows or {}
    groups: Dict[str, List[Case]] = defaultdict(list)
    for c in cases:
        groups[group_of(c, spec.group_by, rows)].append(c)
    strata: Dict[str, List[str]] = defaultdict(list)
    for key, members in groups.items():
        # A group with several labels counts under its most common one (ties: the first by name).
        labels = Counter(_stratum(c, spec.stratify, rows) for c in members)
        strata[min(labels, key=lambda lab: (-labels[lab], lab))].append(key)
    for stratum in sorted(strata):
        keys = sorted(strata[stratum], key=lambda k: hashlib.sha256(f"{spec.seed}:{k}".encode()).hexdigest())
        start = 0
        for name, count in _shares(len(keys), spec.fractions):
            for key in keys[start:start + count]:
                for c in groups[key]:
                    c.split, c.training = name, name == "train"
            start += count


def apply_split_file(cases: List[Case], split_file: Union[str, Path]) -> None:
    """Splits from the user's file: `splits.json` of an earlier run, or one case name per line
    (training) or `case,SPLIT` rows (train, val, test, ...); cases it does not name are test cases."""
    path = Path(split_file)
    chosen: Dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise MedPrepError(f"cannot read the split file: {exc.strerror}", split_file) from None
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
            chosen = {case: name for name, members in doc["splits"].items() for case in members}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise MedPrepError("the split file is not a splits.json", split_file,
                               'give {"splits": {"train": [cases], ...}} or a CSV of case,split') from None
    else:
        for line in text.splitlines():
            parts = [p.strip() for p in line.replace("\t", ",").split(",")]
            if not parts[0] or parts[0].lower() == "case" or parts[0].startswith("#"):
                continue
            name = parts[1].lower() if len(parts) > 1 and parts[1] else "train"
            chosen[parts[0]] = SPLIT_ALIASES.get(name, name)
    unknown = sorted(set(chosen) - {c.case_id for c in cases})
    if unknown:
        raise MedPrepError(f"the split file names case '{unknown[0]}', which the input lacks", split_file)
    for c in cases:
        c.split = chosen.get(c.case_id, "test")
        c.training = c.split == "train"


def splits_document(cases: List[Case], method: Dict[str, Any]) -> Dict[str, Any]:
    """What splits.json holds: how the split was made, the cases of each split, labels per split."""
    splits: Dict[str, List[str]] = defaultdict(list)
    counts: Dict[str, Counter] = defaultdict(Counter)
    for c in cases:
        splits[c.split_name].append(c.case_id)
        counts[c.split_name][c.target if c.target is not None else ""] += 1
    return {"method": method, "splits": dict(splits),
            "counts": {name: dict(sorted(n.items())) for name, n in counts.items()}}
