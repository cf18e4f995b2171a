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


def missing_statistics(pipeline, source: str):
    """(message, where, hint) for a pipeline whose dataset statistics were not given: which values of
    which step, and the two ways to get them."""
    index = pipeline.statistics_steps()[0]
    step = pipeline.steps[index]
    fitted = [name for name in step.spec.fitted if getattr(step.params, name) is None]
    sets = " ".join(f"--set {step.spec.name}.{name}=..." for name in fitted)
    return (f"step {index + 1} '{step.spec.name}' needs dataset statistics ({', '.join(fitted)}) from the training "
            "cases", source,
            f"pass --statistics FILE: the statistics.json of a `medprep run {source}` over the training set, or "
            f"`medprep stats {source} TRAINING_DIR stats.json`; or give the values: {sets}")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "preprocess", help="preprocess one image (and its label map) with a pipeline",
        description="Run a preprocessing pipeline on IN (a NIfTI file or a DICOM folder with one series) "
                    "and write OUT (.nii.gz, .nii, .npy or .npz) with a JSON sidecar of its provenance.",
        epilog=pipeline_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
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
    from ..export import suffix_of, write_volume
    from ..preprocess import load_pipeline, load_statistics, run_pipeline
    from ..cases import read_image, read_label

    pipeline = load_pipeline(args.pipeline or args.preset, args.overrides)
    statistics = load_statistics(args.statistics, pipeline) if args.statistics else None
    if pipeline.statistics_steps() and statistics is None:
        raise MedPrepError(*missing_statistics(pipeline, args.pipeline or args.preset))
    suffix_of(args.output)
    outputs = [Path(args.output)] + ([Path(args.label[1])] if args.label else [])
    for out in outputs:
        if out.exists() and not args.overwrite:
            raise MedPrepError("output exists", out, "use --overwrite to replace it")
    image = read_image(args.input)
    label = read_label(args.label[0]) if args.label else None
    out, out_label = run_pipeline(image, pipeline, label, statistics)
    written = write_volume(out, args.output, pipeline.output.dtype, pipeline.output.slices,
                           overwrite=args.overwrite)
    if out_label is not None:
        written += write_volume(out_label, args.label[1], pipeline.output.label_dtype, pipeline.output.slices,
                                sidecar=False, overwrite=args.overwrite, what="label")
    if args.qa:
        from ..qa import write_qa_png

        written.append(write_qa_png(image, out, out_label, args.qa, title=Path(args.output).name))
    if args.save_pipeline:
        pipeline.save(args.save_pipeline)
        written.append(Path(args.save_pipeline))
    shape = "x".join(str(n) for n in out.shape_xyz)
    spacing = "x".join(f"{s:g}" for s in out.spacing)
    print(f"{args.output}: {shape} voxels, {spacing} mm, {len(pipeline.steps)} steps ({pipeline.name})",
          file=sys.stdout)
    return 0
