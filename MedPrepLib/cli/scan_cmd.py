"""`medprep scan PATH`: list the DICOM series under a folder, without patient identity by default."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List

from ..discovery import count_reasons, scan
from ..errors import MedPrepError
from ..progress import Progress

_COLUMNS = [("study_date", "Date"), ("modality", "Mod"), ("series_number", "Series"),
            ("description", "Description"), ("size", "Size"), ("files", "Files"), ("warnings", "Warnings")]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan", help="list DICOM series found under a folder",
                       description="Find DICOM series anywhere under PATH (any file names) and list them.")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--show-phi", action="store_true", help="include patient names, IDs and UIDs")
    p.add_argument("--ignore-derived", action="store_true", help="leave out derived and localizer images")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _size(row: Dict[str, Any]) -> str:
    size = f"{row['columns']}x{row['rows']}"
    slices = row["slices_per_frame"] if row["slices_per_frame"] > 1 else None
    if slices:
        size += f"x{slices}x{row['frames']}"
    elif row["frames"] > 1:
        size += f"x{row['frames']}"
    return size


def _table(rows: List[Dict[str, Any]], show_phi: bool) -> str:
    cols = list(_COLUMNS) + ([("patient_name", "Patient"), ("patient_id", "ID")] if show_phi else [])
    cells = [[h for _, h in cols]]
    for r in rows:
        line = []
        for key, _ in cols:
            if key == "size":
                line.append(_size(r))
            elif key == "warnings":
                flags = (["derived"] if r["derived"] else []) + (["localizer"] if r["localizer"] else [])
                line.append("; ".join(flags + r["warnings"]))
            else:
                value = r.get(key)
                line.append("" if value is None else str(value))
        cells.append(line)
    widths = [min(40, max(len(c[i]) for c in cells)) for i in range(len(cols))]
    return "\n".join("  ".join(c[i][:widths[i]].ljust(widths[i]) for i in range(len(cols))).rstrip()
                     for c in cells)


def _annotation_table(annotations: List[Any], series: List[Any]) -> str:
    """SEG/RTSTRUCT objects: what they annotate (the image series' number) and their segment names."""
    numbers = {s.uid: s.series_number for s in series}
    cells = [["Kind", "Series", "Annotates", "Count", "Names"]]
    for a in annotations:
        found = [str(numbers[u]) for u in a.referenced_series if u in numbers]
        target = ("series " + ",".join(found)) if found else "MISSING (referenced images not found)"
        cells.append([a.kind, "" if a.series_number is None else str(a.series_number), target,
                      str(len(a.names)), ", ".join(a.names)])
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    return "\n".join("  ".join([c[i].ljust(widths[i]) for i in range(4)] + [c[4][:80]]).rstrip() for c in cells)


def run(args: argparse.Namespace) -> int:
    bar = Progress("scanning", enabled=None if not args.quiet and not args.json else False)
    result = scan(args.path, ignore_derived=args.ignore_derived, progress=bar)
    bar.done()
    if result.n_files == 0:
        raise MedPrepError("no files found", args.path, "check the path")
    rows = [s.summary(show_phi=args.show_phi) for s in result.series]
    notes = [a.summary(show_phi=args.show_phi) for a in result.annotations]
    skipped = count_reasons(result.skipped)
    skipped_text = ", ".join(f"{n} {why}" for why, n in sorted(skipped.items()))
    if not rows and not notes:
        raise MedPrepError(f"no DICOM image series found among {result.n_files} file(s) (skipped: {skipped_text})",
                           args.path, "check the folder")
    if args.json:
        json.dump({"series": rows, "annotations": notes, "files": result.n_files, "skipped": skipped}, sys.stdout,
                  indent=2, default=str)
        sys.stdout.write("\n")
    else:
        if rows:
            print(_table(rows, args.show_phi))
        if notes:
            if rows:
                print()
            print(_annotation_table(result.annotations, result.series))
        summary = f"{len(rows)} series in {result.n_files} files"
        if notes:
            missing = sum(1 for a in result.annotations if a.missing_reference)
            summary += f"; {len(notes)} annotation object(s)" + (
                f", {missing} whose referenced images are missing" if missing else "")
        if skipped:
            summary += f"; skipped: {skipped_text}"
        print(summary, file=sys.stderr)
    return 0
