"""`medprep anonymize IN OUT`: a de-identified copy of a DICOM tree (PS3.15 Annex E)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import MedPrepError
from .executor_args import add_executor_arguments, executor_from_args, print_workers


def add_anonymize_options(p: argparse.ArgumentParser, full: bool = False) -> None:
    """The Annex E options, shared by `anonymize` (`full`) and `convert --anonymize`."""
    key = p.add_mutually_exclusive_group()
    key.add_argument("--key", metavar="SECRET",
                     help="secret that makes UIDs, pseudonyms and date shifts repeatable across runs "
                          "(default: a random key for this run only)")
    key.add_argument("--key-file", metavar="F", help="read the secret from file F")
    from ..anonymize.options import user_options

    groups: Dict[str, argparse._MutuallyExclusiveGroup] = {}
    for option in user_options():
        meta = option.metadata
        if meta["copy_only"] and not full:
            continue
        where = p
        if meta["exclusive"]:
            if meta["exclusive"] not in groups:
                groups[meta["exclusive"]] = p.add_mutually_exclusive_group()
            where = groups[meta["exclusive"]]
        flag = "--" + option.name.replace("_", "-")
        if meta["choices"]:
            where.add_argument(flag, choices=meta["choices"], default=option.default, help=meta["help"])
        else:
            where.add_argument(flag, action="store_true", help=meta["help"])


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "anonymize", help="write a de-identified copy of DICOM files (PS3.15 Annex E basic profile)",
        description="De-identify every image series under IN_DIR into OUT_DIR per DICOM PS3.15 Annex E. "
                    "Output names are built from the new UIDs only. The input is never modified.")
    p.add_argument("input", metavar="IN_DIR", help="DICOM folder (or file)")
    p.add_argument("output", metavar="OUT_DIR", help="output folder (outside IN_DIR)")
    add_anonymize_options(p, full=True)
    p.add_argument("--jobs", "-j", type=int, default=min(4, os.cpu_count() or 1), metavar="N",
                   help="worker processes (default: the number of CPUs, at most 4)")
    add_executor_arguments(p)
    p.add_argument("--mapping", metavar="FILE",
                   help="also write the original-to-pseudonym table (this file is itself identifying)")
    p.add_argument("--show-paths", action="store_true",
                   help="name each input file that is damaged, withheld or could not be read (folder and file "
                        "names often hold patient names; by default only their number per reason is printed)")
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

    from ..anonymize.options import user_options

    options = AnonymizeOptions(**{o.name: getattr(args, o.name) for o in user_options() if hasattr(args, o.name)})
    return Anonymizer(_key(args), options)


def _by_reason(files: List[Tuple[Path, str]]) -> Dict[str, int]:
    from ..discovery import Skipped, count_reasons

    return count_reasons([Skipped(p, r) for p, r in files])


def _warn_files(files: List[Tuple[Path, str]], what: str, show_paths: bool, hint: str = "") -> None:
    """One warning per reason with a count, or with --show-paths one per file (paths may name patients)."""
    if show_paths:
        for path, reason in files:
            print(f"medprep: warning: {what}: {reason} ({path})", file=sys.stderr)
        return
    for reason, n in sorted(_by_reason(files).items()):
        print(f"medprep: warning: {n} file(s) {what}: {reason}; --show-paths names them{hint}", file=sys.stderr)


def _summary(report, kept_damaged: bool) -> str:
    withheld = []
    if report.withheld:
        withheld.append(f"{sum(w.files for w in report.withheld)} in {len(report.withheld)} series whose "
                        f"pixels may show identity")
    if report.damaged and not kept_damaged:
        withheld.append(f"{len(report.damaged)} with damaged pixel data")
    skipped = _by_reason(report.unreadable)
    if report.not_dicom:
        skipped["not DICOM"] = report.not_dicom
    for reason, n in report.not_images.items():
        key = reason.split(":")[0]
        skipped[key] = skipped.get(key, 0) + n
    line = f"anonymized {report.written} files in {report.series_written} series"
    if kept_damaged and report.damaged:
        line += f" ({len(report.damaged)} with damaged pixel data, kept on request)"
    n_withheld = sum(w.files for w in report.withheld) + (0 if kept_damaged else len(report.damaged))
    line += f"; withheld {n_withheld} files" + (f" ({', '.join(withheld)})" if withheld else "")
    line += f"; skipped {sum(skipped.values())} files"
    if skipped:
        line += " (" + ", ".join(f"{n} {why}" for why, n in sorted(skipped.items())) + ")"
    return line


def run(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise MedPrepError(f"--jobs must be at least 1, not {args.jobs}")
    # Where the jobs run comes first: a local pool's fork server then imports what the workers need
    # while this process imports its own modules.
    with executor_from_args(args, args.jobs, preload=["MedPrepLib.anonymize.tree"]) as executor:
        from ..anonymize import anonymize_tree, write_mapping
        from ..anonymize.tree import MAPPING_WARNING

        anonymizer = anonymizer_from_args(args)
        report = anonymize_tree(args.input, args.output, anonymizer, jobs=executor)
    for w in report.withheld:
        print(f"medprep: warning: series {w.series_number} ({w.modality}, {w.files} files) not written: "
              f"{w.reason}; check its pixels for burned-in identity, then use --on-burned-in keep",
              file=sys.stderr)
    if args.keep_damaged_pixels:
        _warn_files(report.damaged, "written with damaged pixel data", args.show_paths)
    else:
        _warn_files(report.damaged, "withheld", args.show_paths, "; --keep-damaged-pixels writes them")
    _warn_files(report.unreadable, "not written", args.show_paths)
    for reason, n in sorted(report.not_images.items()):
        print(f"medprep: note: {n} DICOM file(s) not written: {reason}", file=sys.stderr)
    if args.mapping:
        write_mapping(args.mapping, anonymizer)
        print(f"medprep: warning: {args.mapping}: {MAPPING_WARNING}", file=sys.stderr)
    print_workers(report.workers, report.retried)
    if report.resumed:
        print(f"medprep: note: {report.resumed} files were done by an earlier, interrupted run", file=sys.stderr)
    print(_summary(report, args.keep_damaged_pixels))
    if report.written == 0 and not report.withheld:
        damaged = len(report.unreadable) + len(report.damaged)
        if damaged:
            raise MedPrepError(f"nothing written: {damaged} damaged DICOM file(s) and no intact image", args.input,
                               "see the warnings above")
        raise MedPrepError("no DICOM image found", args.input, "give a folder that holds DICOM images")
    return 0
