"""`medprep qa`: a before/after picture of one preprocessed case."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "qa", help="picture of a case before and after preprocessing",
        description="Write PNG: orthogonal mid-slices of BEFORE (NIfTI file or DICOM folder) and AFTER "
                    "(NIfTI file), with LABEL (on AFTER's grid) overlaid, annotated with shape, spacing "
                    "and intensity range.")
    parser.add_argument("before", metavar="BEFORE")
    parser.add_argument("after", metavar="AFTER")
    parser.add_argument("png", metavar="PNG")
    parser.add_argument("--label", metavar="LABEL", help="label map on AFTER's grid")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import MedPrepError
    from ..qa import write_qa_png
    from ..cases import read_image, read_label

    before = read_image(args.before)
    after = read_image(args.after)
    label = read_label(args.label) if args.label else None
    if label is not None and label.array.shape != after.array.shape[-3:]:
        raise MedPrepError("the label map is not on AFTER's grid", args.label, "give the preprocessed label map")
    write_qa_png(before, after, label, args.png, title=Path(args.after).name)
    print(args.png)
    return 0
