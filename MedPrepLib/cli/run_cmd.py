"""`medprep run`: run a pipeline over a whole dataset, in parallel and resumable."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..cases import CASE_ID_RULES
from .executor_args import add_executor_arguments, executor_from_args, print_workers
from .preprocess_cmd import PipelineHelpFormatter, add_pipeline_arguments, pipeline_help


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="preprocess a whole dataset with a pipeline",
        description="Run PIPELINE (a pipeline file or a preset name) over every case of INPUT_DIR (a folder "
                    "of NIfTI files, optionally with labels matched by name, or a DICOM tree) into OUTPUT_DIR. "
                    "Dataset statistics come from the training cases only. Cases whose inputs and pipeline "
                    "are unchanged and whose outputs exist are skipped; manifest.csv lists what was written "
                    "from what. One failing case does not stop the others; the exit status is 1 if any failed.",
        epilog=pipeline_help, formatter_class=PipelineHelpFormatter)
    add_pipeline_arguments(parser, positional=True)
    parser.add_argument("input_dir", metavar="INPUT_DIR")
    parser.add_argument("output_dir", metavar="OUTPUT_DIR")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="worker processes (default: every CPU this process may use)")
    add_executor_arguments(parser)
    parser.add_argument("--qa", action="store_true", help="write qa/CASE.png per case and qa/index.html")
    labels = parser.add_argument_group("labels (a folder of label maps, or a table of class labels or label maps)")
    labels.add_argument("--labels", metavar="DIR|TABLE",
                        help="folder of label maps named like the images, or a CSV/TSV table of one label per "
                             "case id (class labels, or label map files relative to the table)")
    labels.add_argument("--id-column", metavar="NAME", help="the table's case id column (e.g. patientId)")
    labels.add_argument("--label-column", metavar="NAME", help="the table's label column (e.g. Target)")
    labels.add_argument("--case-id", choices=CASE_ID_RULES, default="stem",
                        help="what the id names: the file or folder stem (default; RSNA's <patientId>.dcm), "
                             "or the series' DICOM PatientID, StudyInstanceUID or AccessionNumber")
    labels.add_argument("--case-names", choices=("auto", "id", "hash"), default="auto",
                        help="name DICOM cases after their id (id) or a hash of the series (hash); auto: the id "
                             "for --case-id stem, a hash for the identifying DICOM fields")
    labels.add_argument("--label-names", metavar="A,B,...",
                        help="names of label values 1, 2, ... (dataset.json), e.g. liver,tumour; DICOM input: keep "
                             "these SEG segments / RTSTRUCT ROIs (by name, case-insensitive) as labels 1, 2, ... "
                             "(default: every one, numbered by segment/ROI number)")
    labels.add_argument("--require-labels", action="store_true",
                        help="stop if a case has no label or a label matches no case")
    labels.add_argument("--boxes", metavar="TABLE|COCO.json",
                        help="boxes or points per case: a CSV/TSV table (x,y,width,height; x0,y0,w,h; "
                             "x0,y0,x1,y1; x,y for points; img_shape_x,img_shape_y for a resized copy's pixels; "
                             "ids in --id-column) or COCO JSON; they follow every step into boxes.csv and "
                             "SPLIT/annotations.json")
    labels.add_argument("--box-label-column", metavar="NAME", default="",
                        help="the boxes table's class column (default: every box is an 'object')")
    splits = parser.add_argument_group("splits")
    splits.add_argument("--split", metavar="FILE|SPEC",
                        help="train=0.8,val=0.1,test=0.1 (drawn from --split-seed), or a file: splits.json, one "
                             "training case per line, or CASE,SPLIT rows (default: all train, or imagesTr/imagesTs)")
    splits.add_argument("--split-seed", type=int, default=0, metavar="N", help="seed of a drawn split (default 0)")
    splits.add_argument("--stratify", metavar="label|COLUMN",
                        help="split each class label (or value of a table column) in the same proportions")
    splits.add_argument("--group-by", metavar="patient|study|COLUMN",
                        help="keep each patient's (study's, column value's) cases in one split")
    # Checked in `_run`, not by argparse choices: the choices live with the pipeline's output
    # parameters (numpy), and the run's worker pool starts only once the arguments are parsed.
    parser.add_argument("--layout", metavar="LAYOUT",
                        help="the output layout, as --set output.layout=LAYOUT: files (images/CASE), classes "
                             "(SPLIT/LABEL/CASE, torchvision DatasetFolder) or detection (SPLIT/images/CASE with "
                             "SPLIT/annotations.json, COCO)")
    nnunet = parser.add_argument_group("nnU-Net layout (output.format=nnunet)")
    nnunet.add_argument("--modality", metavar="M[,M...]",
                        help="the modality of the images (CT, MR, ...; one for all channels or one per channel) "
                             "where no DICOM header or sidecar gives it; it names the dataset.json channels, from "
                             "which nnU-Net picks its normalisation")
    nnunet.add_argument("--dataset-id", type=int, metavar="NNN",
                        help="write OUTPUT_DIR/DatasetNNN_NAME (with --dataset-name)")
    nnunet.add_argument("--dataset-name", metavar="NAME", help="the dataset's name, e.g. Liver")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cases import worker_preload
    from ..errors import MedPrepError

    if args.workers is not None and args.workers < 1:
        raise MedPrepError(f"--workers must be at least 1, got {args.workers}")
    # Where the jobs run comes first: a local pool's fork server then imports what the workers need
    # while this process imports its own modules and checks the rest of the command.
    with executor_from_args(args, args.workers, worker_preload(args.input_dir)) as executor:
        return _run(args, executor)


def _run(args: argparse.Namespace, executor: Any) -> int:
    from ..boxes import BoxOptions
    from ..cases import LabelTableOptions, is_label_table
    from ..errors import MedPrepError
    from ..export import DatasetInfo, nnunet_dataset_dir, parse_names
    from ..preprocess import load_pipeline
    from ..preprocess.pipeline import LAYOUTS
    from ..progress import Progress
    from ..runner import run_dataset
    from ..splits import is_split_spec, parse_split_spec

    if args.layout and args.layout not in LAYOUTS:
        raise MedPrepError(f"--layout takes one of {', '.join(LAYOUTS)}, got '{args.layout}'")
    pipeline = load_pipeline(args.pipeline, args.overrides + ([f"output.layout={args.layout}"] if args.layout else []))
    table = None
    if args.labels and is_label_table(args.labels):
        if not (args.id_column and args.label_column):
            raise MedPrepError("a labels table needs --id-column and --label-column", args.labels)
        table = LabelTableOptions(Path(args.labels), args.id_column, args.label_column, args.case_id,
                                  args.case_names, args.require_labels)
    elif args.label_column or args.require_labels or (args.id_column and not args.boxes):
        raise MedPrepError("--id-column, --label-column and --require-labels go with --labels TABLE.csv",
                           hint="give the labels table with --labels")
    boxes = None
    if args.boxes:
        if not args.boxes.lower().endswith(".json") and not args.id_column:
            raise MedPrepError("a boxes table needs --id-column", args.boxes)
        boxes = BoxOptions(Path(args.boxes), args.id_column or "", args.box_label_column, args.case_id,
                           args.case_names)
    spec = None
    if args.split and is_split_spec(args.split):
        spec = parse_split_spec(args.split, args.split_seed, args.stratify, args.group_by)
    elif args.stratify or args.group_by:
        raise MedPrepError("--stratify and --group-by go with --split train=...,val=...,test=...")
    if spec is not None and spec.stratify == "label" and table is None:
        raise MedPrepError("--stratify label needs class labels", hint="give --labels TABLE.csv")
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

    report = run_dataset(pipeline, args.input_dir, output_dir, qa=args.qa, labels_dir=None if table else args.labels,
                         split_file=None if spec or not args.split else args.split,
                         statistics_file=args.statistics, progress=progress, executor=executor,
                         label_table=table, split=spec, boxes=boxes,
                         label_names=list(dataset.label_names) or None, dataset=dataset)
    for warning in report.warnings:
        print(f"medprep: warning: {warning}", file=sys.stderr)
    reused, computed = report.summaries
    if reused:
        print(f"medprep: note: statistics pass: {reused} case summaries taken from an interrupted run, "
              f"{computed} computed", file=sys.stderr)
    for case, error in report.failed:
        print(f"medprep: {case} failed: {error}", file=sys.stderr)
    total = len(report.written) + len(report.skipped) + len(report.failed)
    print(f"{total} cases: {len(report.written)} written, {len(report.skipped)} unchanged, "
          f"{len(report.failed)} failed ({report.seconds:.1f} s); manifest: {output_dir}/manifest.csv")
    if len(report.splits) > 1:
        print("splits: " + ", ".join(f"{name} {n}" for name, n in sorted(report.splits.items())))
    print_label_matches(report)
    print_workers(report.workers, report.retried)
    return 1 if report.failed else 0


def print_label_matches(report: Any, shown: int = 20) -> None:
    """Cases without a label and labels without a case, a few by name (ids that are patient data by line)."""
    if report.unlabelled:
        names = ", ".join(report.unlabelled[:shown]) + (" ..." if len(report.unlabelled) > shown else "")
        print(f"{len(report.unlabelled)} cases have no label in the table: {names}")
        if len(report.unlabelled) == sum(report.splits.values()):
            print("no case matched an id of the table: check --id-column and --case-id", file=sys.stderr)
    if report.unused_labels:
        items = [f"line {line}" if report.identifying_ids else key for key, line in report.unused_labels[:shown]]
        more = " ..." if len(report.unused_labels) > shown else ""
        print(f"{len(report.unused_labels)} labels in the table match no case: {', '.join(items)}{more}")
    if report.unboxed:
        names = ", ".join(report.unboxed[:shown]) + (" ..." if len(report.unboxed) > shown else "")
        print(f"{len(report.unboxed)} cases are not in the boxes file: {names}")
    if report.boxes:
        counts = ", ".join(f"{report.boxes.get(k, 0)} {k}" for k in ("kept", "clipped", "dropped"))
        print(f"boxes and points: {counts} (clipped: cut by the output's edge; dropped: outside it); boxes.csv")
