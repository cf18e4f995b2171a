"""`medprep preprocess`: run a preprocessing pipeline on one case (an image and optionally its label map)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import MedPrepError


def pipeline_help() -> str:
    from ..preprocess import STEPS, list_presets
    from ..preprocess.registry import get_step

    get_step("orient")  # fills the catalogue
    steps = "\n".join(f"  {name:<26} {STEPS[name].doc}" for name in sorted(STEPS))
    return f"presets: {', '.join(list_presets())}\n\nsteps:\n{steps}"


class PipelineHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help whose epilog may be a function, called only when the help is printed.

    `pipeline_help` imports every step (numpy, SimpleITK: 0.2 s); building the parser of `run` must
    not wait for it, since a run's worker pool starts only once its arguments are parsed.
    """

    def add_text(self, text):  # noqa: ANN001 - argparse's signature
        super().add_text(text() if callable(text) else text)


def add_pipeline_arguments(parser: argparse.ArgumentParser, positional: bool = False,
                           statistics: bool = True) -> None:
    """The pipeline: a positional PIPELINE (called before the command's other positionals) or
    --pipeline/--preset; --set; and --statistics for a command that applies statistics rather than fitting them."""
    if positional:
        parser.add_argument("pipeline", metavar="PIPELINE", help="pipeline file or preset name")
    else:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--pipeline", metavar="FILE", help="pipeline file (YAML or JSON)")
        which.add_argument("--preset", metavar="NAME", help="a preset pipeline, e.g. ct-liver")
    parser.add_argument("--set", metavar="STEP.PARAM=VALUE", action="append", default=[], dest="overrides",
                        help="change a parameter, e.g. resample.spacing=[1,1,1] (repeatable)")
    if statistics:
        parser.add_argument("--statistics", metavar="FILE",
                            help="statistics.json of a `medprep run` for steps that need dataset statistics")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "preprocess", help="preprocess one image (and its label map) with a pipeline",
        description="Run a preprocessing pipeline on IN (a NIfTI file or a DICOM folder with one series) "
                    "and write OUT (.nii.gz, .nii, .npy or .npz) with a JSON sidecar of its provenance.",
        epilog=pipeline_help, formatter_class=PipelineHelpFormatter)
    parser.add_argument("input", metavar="IN", help="NIfTI file or DICOM folder")
    parser.add_argument("output", metavar="OUT", help="output file: .nii.gz, .nii, .npy or .npz")
    add_pipeline_arguments(parser)
    parser.add_argument("--label", nargs=2, metavar=("LABEL_IN", "LABEL_OUT"),
                        help="label map on IN's grid; it follows every spatial step")
    parser.add_argument("--qa", metavar="PNG", help="also write a before/after picture")
    parser.add_argument("--save-pipeline", metavar="FILE", help="write the resolved pipeline (YAML or JSON)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cases import read_image, read_label
    from ..export import OutputPaths, suffix_of
    from ..preprocess import load_pipeline, load_statistics
    from ..process import process_case, require_statistics

    source = args.pipeline or args.preset
    pipeline = load_pipeline(source, args.overrides)
    statistics = load_statistics(args.statistics, pipeline) if args.statistics else None
    require_statistics(pipeline, statistics, source)  # before a long read
    suffix_of(args.output)
    paths = OutputPaths(Path(args.output), Path(args.label[1]) if args.label else None)
    for out in (paths.image, paths.label):
        if out is not None and out.exists() and not args.overwrite:
            raise MedPrepError("output exists", out, "use --overwrite to replace it")
    label = read_label(args.label[0]) if args.label else None
    result = process_case(lambda: read_image(args.input), pipeline, paths, label, statistics, qa=args.qa,
                          title=paths.image.name, overwrite=args.overwrite)
    if args.save_pipeline:
        pipeline.save(args.save_pipeline)
    shape = "x".join(str(n) for n in result.image.shape_xyz)
    spacing = "x".join(f"{s:g}" for s in result.image.spacing)
    print(f"{args.output}: {shape} voxels, {spacing} mm, {len(pipeline.steps)} steps ({pipeline.name})",
          file=sys.stdout)
    return 0
