"""`medprep header`: print the header of a DICOM file, or of the first DICOM file in a folder."""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from ..dicomfile import is_dicom, read_header
from ..discovery import walk_files
from ..errors import MedPrepError, NotDicomError
from ..header import ITEM_TAG, HeaderRow, check_keyword, filter_rows, header_rows, parse_tag

# The name column of the text table grows with the data up to this width; longer names push the value.
_MAX_NAME_WIDTH = 48


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "header",
        help="show the DICOM header of a file",
        description="Show the DICOM header of FILE, or of the first DICOM file in DIR (sorted walk). "
                    "Pixel data is never decoded; private tags are hidden unless --private is given.",
    )
    parser.add_argument("path", metavar="FILE|DIR", help="a DICOM file, or a folder to search for one")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--tag", metavar="GGGG,EEEE", help="show only this tag (at any sequence depth)")
    which.add_argument("--keyword", metavar="NAME", help="show only this keyword, e.g. PatientName (any case)")
    which.add_argument("--search", metavar="TEXT", help="show elements whose tag, name or value contains TEXT")
    parser.add_argument("--private", action="store_true", help="also show private tags, with their private creator")
    parser.add_argument("--json", action="store_true", help="print a JSON list of rows instead of a table")
    parser.add_argument("--all", action="store_true", help="with DIR: show every DICOM file, not only the first")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Check the filters before touching any file, so that a typo fails fast.
    if args.tag is not None:
        parse_tag(args.tag)
    keyword = check_keyword(args.keyword) if args.keyword is not None else None
    root = Path(args.path)
    if not root.exists():
        raise MedPrepError("no such file or folder", root, "check the path")
    if root.is_dir():
        files = list(itertools.islice(_dicom_files(root), None if args.all else 1))
        if not files:
            raise MedPrepError("no DICOM files found", root, "pass a DICOM file, or a folder that contains DICOM files")
    else:
        files = [root]
    shown = []
    for path in files:
        try:
            ds = read_header(path).ds
        except NotDicomError as exc:
            raise NotDicomError(exc.what, exc.path, "pass a DICOM file, or a folder that contains DICOM files") from exc
        rows = filter_rows(header_rows(ds, include_private=args.private),
                           tag=args.tag, keyword=keyword, search=args.search)
        shown.append((path, rows))
        if not args.json:
            _print_table(path, rows, sys.stdout)
    if args.json:
        if args.all:
            data: object = [{"file": str(path), "rows": [asdict(r) for r in rows]} for path, rows in shown]
        else:
            data = [asdict(r) for r in shown[0][1]]
            if root.is_dir():
                print(f"medprep: header of {files[0]}", file=sys.stderr)
        json.dump(data, sys.stdout, indent=1)
        sys.stdout.write("\n")
    if not any(rows for _, rows in shown):
        print("medprep: no matching elements", file=sys.stderr)
    return 0


def _dicom_files(root: Path) -> Iterator[Path]:
    """DICOM files under root in the order every command walks a tree (sorted, files before subfolders)."""
    def unreadable(folder: Path, exc: OSError) -> None:
        print(f"medprep: warning: cannot list folder {folder}: {exc.strerror or exc.__class__.__name__}",
              file=sys.stderr)

    return (p for p in walk_files(root, on_error=unreadable) if is_dicom(p))


def _print_table(path: Path, rows: list[HeaderRow], out: TextIO) -> None:
    out.write(f"# {path}\n")
    names = [_name_cell(row) for row in rows]
    width = min(max((len(name) for name in names), default=0), _MAX_NAME_WIDTH)
    for row, name in zip(rows, names):
        tag = "" if row.tag == ITEM_TAG else f"({row.tag})"
        out.write(f"{tag:<11} {row.vr:<2} {name:<{width}} {row.value}".rstrip() + "\n")


def _name_cell(row: HeaderRow) -> str:
    label = row.keyword or row.name or "?"
    if row.is_private and row.private_creator:
        label = f"[{row.private_creator}] {label}"
    return "  " * row.depth + label
