"""`medprep anonymize IN OUT`: a de-identified copy of a DICOM tree (PS3.15 Annex E)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

from ..errors import MedPrepError
from .executor_args import add_executor_arguments, executor_from_args, print_workers


def add_anonymize_options(p: argparse.ArgumentParser) -> None:
    """The Annex E options, shared by `anonymize` and `convert --anonymize`."""
    key = p.add_mutually_exclusive_group()
    key.add_argument("--key", metavar="SECRET",
                     help="secret that makes UIDs, pseudonyms and date shifts repeatable across runs "
                          "(default: a random key for this run only)")
    key.add_argument("--key-file", metavar="F", help="read the secret from file F")
    dates = p.add_mutually_exclusive_group()
    dates.add_argument("--shift-dates", action="store_true",
                       help="shift dates by a per-patient offset derived from the key (intervals kept)")
    dates.add_argument("--keep-dates", action="store_true", help="retain full dates")
    p.add_argument("--retain-patient-characteristics", action="store_true",
                   help="keep sex, age, size, weight (needed for PET SUV)")
    p.add_argument("--retain-device-identity", action="store_true", help="keep scanner identity")
    p.add_argument("--retain-institution-identity", action="store_true", help="keep institution identity")
    p.add_argument("--clean-descriptors", action="store_true",
                   help="keep descriptions (series, study, protocol) with patient identity scrubbed out")
    p.add_argument("--keep-private", action="store_true",
                   help="keep a safelist of private attributes (default: remove every private attribute)")
    p.add_argument("--keep-uids", action="store_true", help="retain the original UIDs")
    p.add_argument("--on-burned-in", choices=("skip", "keep", "fail"), default="skip",
                   help="series whose pixels may show identity (BurnedInAnnotation, ultrasound, "
                        "secondary capture, scans): skip with a warning (default), keep, or fail")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "anonymize", help="write a de-identified copy of DICOM files (PS3.15 Annex E basic profile)",
        description="De-identify every image series under IN_DIR into OUT_DIR per DICOM PS3.15 Annex E. "
                    "Output names are built from the new UIDs only. The input is never modified.")
    p.add_argument("input", metavar="IN_DIR", help="DICOM folder (or file)")
    p.add_argument("output", metavar="OUT_DIR", help="output folder (outside IN_DIR)")
    add_anonymize_options(p)
    p.add_argument("--jobs", "-j", type=int, default=min(4, os.cpu_count() or 1), metavar="N",
                   help="worker processes (default: the number of CPUs, at most 4)")
    add_executor_arguments(p)
    p.add_argument("--mapping", metavar="FILE",
                   help="also write the original-to-pseudonym table (this file is itself identifying)")
    p.add_argument("--show-paths", action="store_true",
                   help="name each input file that could not be read (folder and file names often hold "
                        "patient names; by default only their number per reason is printed)")
    p.set_defaults(func=run)


def _key(args: argparse.Namespace) -> Optional[bytes]:
    if args.key is not None:
        if not args.key:
            raise MedPrepError("empty --key", hint="give a non-empty secret or leave --key out")
        return args.key.encode("utf-8")
    if args.key_file:
        try:
            data = Path(args.key_file).read_bytes().strip()
        except OSError as exc:
            raise MedPrepError(f"cannot read key file ({exc.strerror})", args.key_file,
                               "give a readable file holding the secret") from exc
        if not data:
            raise MedPrepError("key file is empty", args.key_file, "put the secret in it")
        return data
    return None


def anonymizer_from_args(args: argparse.Namespace):
    """An Anonymizer built from the options `add_anonymize_options` added."""
    from ..anonymize import AnonymizeOptions, Anonymizer

    options = AnonymizeOptions(
        shift_dates=args.shift_dates, keep_dates=args.keep_dates,
        retain_patient_characteristics=args.retain_patient_characteristics,
        retain_device_identity=args.retain_device_identity,
        retain_institution_identity=args.retain_institution_identity,
        clean_descriptors=args.clean_descriptors, keep_private=args.keep_private, keep_uids=args.keep_uids,
        on_burned_in=args.on_burned_in)
    return Anonymizer(_key(args), options)


def run(args: argparse.Namespace) -> int:
    from ..anonymize import anonymize_tree, write_mapping
    from ..anonymize.tree import MAPPING_WARNING
    from ..discovery import Skipped, count_reasons

    anonymizer = anonymizer_from_args(args)
    if args.jobs < 1:
        raise MedPrepError(f"--jobs must be at least 1, not {args.jobs}")
    with executor_from_args(args, args.jobs, preload=["MedPrepLib.anonymize.tree"]) as executor:
        report = anonymize_tree(args.input, args.output, anonymizer, jobs=executor)
    for w in report.withheld:
        print(f"medprep: warning: series {w.series_number} ({w.modality}, {w.files} files) not written: "
              f"{w.reason}; check its pixels for burned-in identity, then use --on-burned-in keep",
              file=sys.stderr)
    if args.show_paths:
        for path, reason in report.unreadable:
            print(f"medprep: warning: not written: {reason} ({path})", file=sys.stderr)
    else:
        for reason, n in sorted(count_reasons([Skipped(p, r) for p, r in report.unreadable]).items()):
            print(f"medprep: warning: {n} file(s) not written: {reason}; --show-paths names them",
                  file=sys.stderr)
    for reason, n in sorted(report.not_images.items()):
        print(f"medprep: note: {n} DICOM file(s) not written: {reason}", file=sys.stderr)
    if args.mapping:
        write_mapping(args.mapping, anonymizer)
        print(f"medprep: warning: {args.mapping}: {MAPPING_WARNING}", file=sys.stderr)
    print_workers(report.workers, report.retried)
    if report.resumed:
        print(f"medprep: note: {report.resumed} files were done by an earlier, interrupted run", file=sys.stderr)
    print(f"anonymized {report.written} files in {report.series_written} series; "
          f"withheld {len(report.withheld)} series; skipped {report.not_dicom} non-DICOM files, "
          f"{len(report.unreadable)} unreadable")
    if report.written == 0 and not report.withheld:
        raise MedPrepError("no DICOM image found", args.input, "give a folder that holds DICOM images")
    return 0
