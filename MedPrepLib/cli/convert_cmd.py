"""`medprep convert IN OUT_DIR`: one NIfTI and one JSON sidecar per series."""
from __future__ import annotations

import argparse
import sys

from ..convert import ConvertOptions, convert
from ..discovery import count_reasons
from ..errors import MedPrepError
from ..naming import render_name
from ..progress import Progress
from .anonymize_cmd import add_anonymize_options, anonymizer_from_args


_DAMAGED = ("unreadable", "cannot read", "malformed", "image without")
_MAX_NAMED = 20


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert DICOM series to NIfTI + JSON sidecar",
                       description="Convert every DICOM image series under IN to NIfTI with dcm2niix-grade geometry.")
    p.add_argument("input", metavar="IN", help="DICOM folder (searched recursively) or file")
    p.add_argument("output", metavar="OUT_DIR", help="output folder")
    p.add_argument("--name", default="%s_%d", metavar="TEMPLATE",
                   help="file name template with dcm2niix's -f placeholders, e.g. %%p protocol, %%s series "
                        "number, %%d description, %%t study date-time, %%m manufacturer, %%e echo, %%x study ID, "
                        "%%z sequence name; %%i patient ID and %%n patient name only when asked for; all of "
                        "%%a %%b %%c %%d %%e %%f %%g %%i %%j %%k %%l %%m %%n %%o %%p %%r %%s %%t %%u %%v %%x %%y %%z "
                        "(default: %%s_%%d, no identity)")
    p.add_argument("--no-gz", action="store_true", help="write .nii instead of .nii.gz")
    p.add_argument("--ignore-derived", action="store_true",
                   help="skip derived and localizer images (like dcm2niix -i y)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--tilt-correct", action="store_true",
                   help="also write a gantry-tilt corrected volume (_Tilt) where the series is tilted")
    p.add_argument("--equalize-spacing", action="store_true",
                   help="also write an equidistant resampled volume (_Eq) where slice spacing varies")
    p.add_argument("--no-annotations", action="store_true",
                   help="do not convert DICOM SEG / RT Structure Sets into label maps beside their images")
    p.add_argument("--label-onehot", action="store_true",
                   help="label maps as 4D, one volume per segment/ROI (overlaps kept) instead of 3D "
                        "(where segments overlap, the highest number wins)")
    p.add_argument("--keep-fractions", action="store_true",
                   help="FRACTIONAL SEG: keep the fractions (4D float) instead of thresholding at 0.5")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    anon = p.add_argument_group("de-identification (with --anonymize; see `medprep anonymize --help`)")
    anon.add_argument("--anonymize", action="store_true",
                      help="build names, NIfTI headers and sidecars from headers de-identified per PS3.15 Annex E")
    add_anonymize_options(anon)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    render_name(args.name, {})   # a bad --name template fails now, before any scanning or output folder
    options = ConvertOptions(name_template=args.name, gz=not args.no_gz, ignore_derived=args.ignore_derived,
                             overwrite=args.overwrite, tilt_correct=args.tilt_correct,
                             equalize_spacing=args.equalize_spacing, annotations=not args.no_annotations,
                             label_onehot=args.label_onehot, keep_fractions=args.keep_fractions,
                             anonymizer=anonymizer_from_args(args) if args.anonymize else None,
                             debug=getattr(args, "debug", False))
    bars = {}

    def progress(stage: str, done: int, total: int) -> None:
        if args.quiet:
            return
        if stage not in bars:
            for b in bars.values():
                b.done()
            bars[stage] = Progress(stage)
        bars[stage](done, total)

    def warn(message: str) -> None:
        for b in bars.values():
            b.done()
        print(f"medprep: warning: {message}", file=sys.stderr)

    try:
        report = convert(args.input, args.output, options, progress=progress, warn=warn)
    except OSError as exc:
        # The file system refused: a file where the output folder should be, no space, no permission.
        raise MedPrepError(f"cannot read or write a file: {exc.strerror or exc.__class__.__name__}",
                           exc.filename or args.output,
                           "check that the output folder can be created and has free space") from exc
    for b in bars.values():
        b.done()
    # Damaged DICOM files are named (other non-DICOM files and non-image objects are only counted).
    damaged = [s for s in report.skipped if s.reason.startswith(_DAMAGED)]
    for s in damaged[:_MAX_NAMED]:
        warn(report.redact(f"skipped {s.path}: {s.reason}"))
    if len(damaged) > _MAX_NAMED:
        warn(f"skipped {len(damaged) - _MAX_NAMED} more damaged file(s)")
    if not report.written:
        if report.failed:
            first = report.failed[0]
            raise MedPrepError(report.redact(f"nothing converted: {len(report.failed)} series failed, first: "
                                             f"{first.reason}"), report.redact(str(first.path)),
                               "see the warnings above")
        raise MedPrepError(f"no DICOM image series found among {report.n_files} file(s)", args.input,
                           "check the folder")
    if not args.quiet:
        for out in report.written:
            shape = "x".join(str(s) for s in out.shape)
            print(f"wrote {out.nifti} ({shape})")
        for out in report.labelmaps:
            print(f"wrote {out.nifti} (label map, {'x'.join(str(s) for s in out.shape)})")
        skipped = count_reasons(report.skipped)
        parts = [f"{len(report.written)} series written"]
        if report.failed:
            parts.append(f"{len(report.failed)} series failed")
        if skipped:
            parts.append("skipped files: " + ", ".join(f"{n} {why}" for why, n in sorted(skipped.items())))
        print("; ".join(parts), file=sys.stderr)
    return 2 if report.internal_errors else 0
