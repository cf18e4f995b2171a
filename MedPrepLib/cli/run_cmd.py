"""`medprep run`: run a pipeline over a whole dataset, in parallel and resumable."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .executor_args import add_executor_arguments, executor_from_args, print_workers
from .preprocess_cmd import add_pipeline_arguments, pipeline_help


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="preprocess a whole dataset with a pipeline",
        description="Run PIPELINE (a pipeline file or a preset name) over every case of INPUT_DIR (a folder "
                    "of NIfTI files, optionally with labels matched by name, or a DICOM tree) into OUTPUT_DIR. "
                    "Dataset statistics come from the training cases only. Cases whose inputs and pipeline "
                    "are unchanged and whose outputs exist are skipped; manifest.csv lists what was written "
                    "from what. One failing case does not stop the others; the exit status is 1 if any failed.",
        epilog=pipeline_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pipeline", metavar="PIPELINE", help="pipeline file or preset name")
    parser.add_argument("input_dir", metavar="INPUT_DIR")
    parser.add_argument("output_dir", metavar="OUTPUT_DIR")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="worker processes (default: every CPU this process may use)")
    add_executor_arguments(parser)
    parser.add_argument("--qa", action="store_true", help="write qa/CASE.png per case and qa/index.html")
    parser.add_argument("--labels", metavar="DIR", help="folder of label maps named like the images")
    parser.add_argument("--split", metavar="FILE",
                        help="training cases: one name per line, or CASE,train|test rows (default: all train, "
                             "or imagesTr/imagesTs)")
    add_pipeline_arguments(parser, positional=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cases import is_dicom_tree
    from ..errors import MedPrepError
    from ..preprocess import load_pipeline
    from ..progress import Progress
    from ..runner import DICOM_PRELOAD, PRELOAD, run_dataset

    if args.workers is not None and args.workers < 1:
        raise MedPrepError(f"--workers must be at least 1, got {args.workers}")
    pipeline = load_pipeline(args.pipeline, args.overrides)
    dicom = Path(args.input_dir).is_dir() and is_dicom_tree(Path(args.input_dir))
    bars = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.setdefault(stage, Progress(stage))
        bar(done, total)
        if done == total:
            bar.done()

    with executor_from_args(args, args.workers, DICOM_PRELOAD if dicom else PRELOAD) as executor:
        report = run_dataset(pipeline, args.input_dir, args.output_dir, qa=args.qa, labels_dir=args.labels,
                             split_file=args.split, statistics_file=args.statistics, progress=progress,
                             executor=executor)
    for warning in report.warnings:
        print(f"medprep: warning: {warning}", file=sys.stderr)
    for case, error in report.failed:
        print(f"medprep: {case} failed: {error}", file=sys.stderr)
    total = len(report.written) + len(report.skipped) + len(report.failed)
    print(f"{total} cases: {len(report.written)} written, {len(report.skipped)} unchanged, "
          f"{len(report.failed)} failed ({report.seconds:.1f} s); manifest: {args.output_dir}/manifest.csv")
    print_workers(report.workers, report.retried)
    return 1 if report.failed else 0
