"""`medprep stats`: fit a pipeline's dataset statistics on a folder of training cases, for later use.

The statistics file is what `medprep run` keeps as statistics.json; `medprep preprocess --statistics`
and `medprep run --statistics` apply it to cases that were not part of the fit (one new image, a
test set) exactly as the training cases were processed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .preprocess_cmd import PipelineHelpFormatter, add_pipeline_arguments, pipeline_help


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stats", help="fit a pipeline's dataset statistics on training cases and write them to a file",
        description="Fit the dataset statistics that PIPELINE's steps need (dataset_zscore, nnunet_ct, "
                    "histogram_standardization) on the training cases of INPUT_DIR (NIfTI folder or DICOM tree, "
                    "as for `medprep run`) and write them to STATISTICS (JSON), for `medprep preprocess "
                    "--statistics` and `medprep run --statistics`. Nothing else is written.",
        epilog=pipeline_help, formatter_class=PipelineHelpFormatter)
    add_pipeline_arguments(parser, positional=True, statistics=False)  # it writes STATISTICS, reads none
    parser.add_argument("input_dir", metavar="INPUT_DIR")
    parser.add_argument("statistics", metavar="STATISTICS", help="the statistics file to write (.json)")
    parser.add_argument("--labels", metavar="DIR", help="folder of label maps named like the images")
    parser.add_argument("--split", metavar="FILE", help="training cases (as for `medprep run`); default: all")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="worker processes (default: every CPU this process may use)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing statistics file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import MedPrepError
    from ..preprocess import load_pipeline
    from ..preprocess.pipeline import save_statistics
    from ..cases import find_cases, worker_preload
    from ..dataset_statistics import compute_statistics
    from ..executor import make_executor
    from ..splits import apply_split_file

    pipeline = load_pipeline(args.pipeline, args.overrides)
    if not pipeline.statistics_steps():
        raise MedPrepError("the pipeline has no step that needs dataset statistics", args.pipeline,
                           "nothing to fit: run it directly with `medprep preprocess` or `medprep run`")
    target = Path(args.statistics)
    if target.exists() and not args.overwrite:
        raise MedPrepError("output exists", target, "use --overwrite to replace it")
    if args.workers is not None and args.workers < 1:
        raise MedPrepError(f"--workers must be at least 1, got {args.workers}")
    cases = find_cases(args.input_dir, args.labels)
    if args.split:
        apply_split_file(cases, args.split)
    warnings: list = []
    with make_executor(args.workers, preload=worker_preload(args.input_dir)) as executor:
        executor.limit(len(cases))
        statistics = compute_statistics(cases, pipeline, executor, warn=warnings.append)
    training = [c.case_id for c in cases if c.training]
    save_statistics(target, pipeline, statistics, training, extra={"pipeline_name": pipeline.name})
    for warning in warnings:
        print(f"medprep: warning: {warning}", file=sys.stderr)
    for index, values in statistics.items():
        shown = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        print(f"step {index + 1} '{pipeline.steps[index].spec.name}': {shown}")
    print(f"{target}: statistics of {len(training)} training cases ({pipeline.name})")
    return 0
