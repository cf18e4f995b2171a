"""`medprep run`: run a pipeline over a whole dataset, in parallel and resumable."""
from __future__ import annotations

import argparse
import sys

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
    parser.add_argument("--qa", action="store_true", help="write qa/CASE.png per case and qa/index.html")
    parser.add_argument("--labels", metavar="DIR", help="folder of label maps named like the images")
    parser.add_argument("--label-names", metavar="A,B,...",
                        help="names of label values 1, 2, ... (dataset.json), e.g. liver,tumour; DICOM input: keep "
                             "these SEG segments / RTSTRUCT ROIs (by name, case-insensitive) as labels 1, 2, ... "
                             "(default: every one, numbered by segment/ROI number)")
    parser.add_argument("--modality", metavar="M[,M...]",
                        help="nnU-Net layout: the modality of the images (CT, MR, ...; one for all channels or one "
                             "per channel) where no DICOM header or sidecar gives it; it names the dataset.json "
                             "channels, from which nnU-Net picks its normalisation")
    parser.add_argument("--dataset-id", type=int, metavar="NNN",
                        help="nnU-Net layout: write OUTPUT_DIR/DatasetNNN_NAME (with --dataset-name)")
    parser.add_argument("--dataset-name", metavar="NAME", help="nnU-Net layout: the dataset's name, e.g. Liver")
    parser.add_argument("--split", metavar="FILE",
                        help="training cases: one name per line, or CASE,train|test rows (default: all train, "
                             "or imagesTr/imagesTs)")
    add_pipeline_arguments(parser, positional=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import MedPrepError
    from ..export import DatasetInfo, nnunet_dataset_dir, parse_names
    from ..preprocess import load_pipeline
    from ..progress import Progress
    from ..runner import run_dataset

    if args.workers is not None and args.workers < 1:
        raise MedPrepError(f"--workers must be at least 1, got {args.workers}")
    pipeline = load_pipeline(args.pipeline, args.overrides)
    output_dir = args.output_dir
    nnunet_only = [flag for flag, value in (("--modality", args.modality), ("--dataset-id", args.dataset_id),
                                            ("--dataset-name", args.dataset_name)) if value is not None]
    if nnunet_only and pipeline.output.format != "nnunet":
        raise MedPrepError(f"{nnunet_only[0]} is for the nnU-Net layout, and the pipeline writes "
                           f"{pipeline.output.format}", args.pipeline, "add --set output.format=nnunet")
    if (args.dataset_id is None) != (args.dataset_name is None):
        raise MedPrepError("--dataset-id and --dataset-name go together",
                           hint="e.g. --dataset-id 17 --dataset-name Liver writes OUTPUT_DIR/Dataset017_Liver")
    if args.dataset_id is not None:
        output_dir = str(nnunet_dataset_dir(output_dir, args.dataset_id, args.dataset_name))
    dataset = DatasetInfo(args.dataset_name, parse_names(args.label_names, "--label-names"),
                          parse_names(args.modality, "--modality", unique=False) if args.modality else ())
    bars = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.setdefault(stage, Progress(stage))
        bar(done, total)
        if done == total:
            bar.done()

    report = run_dataset(pipeline, args.input_dir, output_dir, workers=args.workers, qa=args.qa,
                         labels_dir=args.labels, split_file=args.split, statistics_file=args.statistics,
                         label_names=list(dataset.label_names) or None, progress=progress, dataset=dataset)
    for warning in report.warnings:
        print(f"medprep: warning: {warning}", file=sys.stderr)
    for case, error in report.failed:
        print(f"medprep: {case} failed: {error}", file=sys.stderr)
    total = len(report.written) + len(report.skipped) + len(report.failed)
    print(f"{total} cases: {len(report.written)} written, {len(report.skipped)} unchanged, "
          f"{len(report.failed)} failed ({report.seconds:.1f} s); manifest: {output_dir}/manifest.csv")
    return 1 if report.failed else 0
