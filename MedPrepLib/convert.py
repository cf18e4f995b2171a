"""DICOM folder in, one NIfTI plus one JSON sidecar per series out.

The same functions serve the CLI (`medprep convert`), the dataset runner and the Slicer module.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from .assemble import series_to_volume
from .diffusion import write_gradients
from .discovery import Series, Skipped, scan
from .errors import MedPrepError
from .naming import (INPUT_PATH_PLACEHOLDERS, fields_from_dataset, placeholders, postfix_for, render_name,
                     unique_name)
from .nifti import write_nifti
from .sidecar import dicom_fields, write_sidecar
from .volume import Volume


@dataclass
class ConvertOptions:
    name_template: str = "%s_%d"
    gz: bool = True
    ignore_derived: bool = False
    overwrite: bool = False
    tilt_correct: bool = False
    equalize_spacing: bool = False
    annotations: bool = True        # SEG/RTSTRUCT of a series -> <name>_seg / <name>_rtstruct label map + JSON
    label_onehot: bool = False      # 4D, one volume per segment (overlaps kept) instead of a 3D label map
    keep_fractions: bool = False    # FRACTIONAL SEG: the fractions (4D float) instead of fraction >= 0.5
    anonymizer: Any = None          # a MedPrepLib.anonymize.Anonymizer; None keeps headers as they are
    debug: bool = False             # let an internal error (a bug) raise instead of reporting it per series

    def params(self) -> Dict[str, Any]:
        d = asdict(self)
        d["anonymize"] = d.pop("anonymizer") is not None
        del d["debug"]
        return d


@dataclass
class Output:
    nifti: Path
    sidecar: Path
    shape: List[int]
    series_number: Optional[int]
    warnings: List[str]


@dataclass
class ConvertReport:
    written: List[Output] = field(default_factory=list)
    skipped: List[Skipped] = field(default_factory=list)     # files that are not images
    failed: List[Skipped] = field(default_factory=list)      # series that could not be converted
    n_files: int = 0
    internal_errors: int = 0                                 # series lost to a bug, not to their data
    labelmaps: List[Output] = field(default_factory=list)    # label maps of SEG/RTSTRUCT objects
    # What a message may show: with de-identification, input paths are replaced (see `path_scrubber`).
    redact: Callable[[str], str] = str


def _series_label(series: Series) -> str:
    number = series.series_number if series.series_number is not None else "?"
    return f"series {number}{series.postfix}"


def volume_from_series(series: Series, options: Optional[ConvertOptions] = None) -> Volume:
    """Assemble one series and record the conversion in its history."""
    options = options or ConvertOptions()
    vol = series_to_volume(series)
    vol.history.append({"step": "dicom_to_nifti", "params": options.params()})
    return vol


def read_dicom(path: Union[str, Path], ignore_derived: bool = False,
               warn: Optional[Callable[[str], None]] = None) -> List[Volume]:
    """Every series under `path` as a Volume.

    A series that cannot be assembled is an error, unless the caller passes `warn`: then it is
    reported there and left out (a viewer may still want the others).
    """
    result = scan(path, ignore_derived=ignore_derived)
    if not result.series:
        raise MedPrepError("no DICOM image series found", path, "check the folder")
    volumes = []
    for s in result.series:
        try:
            volumes.append(volume_from_series(s, ConvertOptions(ignore_derived=ignore_derived)))
        except MedPrepError as exc:
            if warn is None:
                raise MedPrepError(f"{_series_label(s)} cannot be converted: {exc.what}", exc.path or path,
                                   exc.hint) from None
            warn(f"{_series_label(s)} not converted: {exc.one_line()}")
    if not volumes:
        raise MedPrepError("no series could be converted", path, "see the warnings above")
    return volumes


def write_pair(vol: Volume, nifti_path: Path, json_path: Path, gz: bool) -> None:
    """Write the NIfTI and its sidecar; never leave one without the other after a failure."""
    write_nifti(vol, nifti_path, gz=gz, overwrite=True)
    try:
        write_sidecar(vol, json_path, overwrite=True)
    except BaseException:
        nifti_path.unlink(missing_ok=True)
        raise


def _targets(out_dir: Path, name: str, ext: str, options: ConvertOptions, label: str, report: ConvertReport,
             warn: Optional[Callable[[str], None]]) -> Optional[Tuple[Path, Path]]:
    """The NIfTI and sidecar paths for `name`, or None (reported) when they exist and may not be replaced."""
    nifti_path = _safe_target(out_dir, name + ext)
    json_path = _safe_target(out_dir, name + ".json")
    if not options.overwrite and (nifti_path.exists() or json_path.exists()):
        report.failed.append(Skipped(nifti_path, f"{label}: output exists (use --overwrite)"))
        if warn:
            warn(f"{label} not written: {nifti_path.name} exists; use --overwrite to replace it")
        return None
    return nifti_path, json_path


def _safe_target(out_dir: Path, name: str) -> Path:
    target = (out_dir / name).resolve()
    if target.parent != out_dir.resolve():
        raise MedPrepError("refusing an output name that leaves the output folder", name)
    return target


def _tilt_spacing_volume(vol: Volume, options: ConvertOptions, series: Series, label: str,
                         warn: Optional[Callable[[str], None]]) -> Optional[Volume]:
    """The --tilt-correct / --equalize-spacing volume of a series, if it needs one.

    Called while vol.meta still holds the private slice positions, which the resampling needs.
    A failure here costs only the extra output, never the series itself.
    """
    tilt = options.tilt_correct and bool(vol.meta.get("GantryTiltDegrees"))
    equalize = options.equalize_spacing and bool(vol.meta.get("VariableSliceSpacing"))
    if not (tilt or equalize):
        return None
    from .reslice import tilt_and_spacing_correct

    padding = series.first.get("PixelPaddingValue")
    try:
        return tilt_and_spacing_correct(vol, tilt, equalize,
                                        padding_value=padding if isinstance(padding, (int, float)) else None)
    except (ValueError, MemoryError) as exc:
        if warn:
            warn(f"{label}: no tilt/spacing-corrected output: {exc}")
        return None


def _write_tilt_spacing(corrected: Volume, vol: Volume, name: str, out_dir: Path, ext: str, taken: set,
                        options: ConvertOptions, series: Series, report: ConvertReport,
                        warn: Optional[Callable[[str], None]]) -> None:
    """Write the corrected volume beside the main output of its series, named as dcm2niix does."""
    from .reslice import correction_postfix

    # dcm2niix saves these extras as 3D volume 1: <name>_Tilt_1, <name>_Eq_1, <name>_Tilt_Eq_1.
    extra = unique_name(name, taken, correction_postfix(corrected) + "_1")
    targets = _targets(out_dir, extra, ext, options, _series_label(series), report, warn)
    if targets is None:
        return
    nifti_path, json_path = targets
    corrected.meta = {k: v for k, v in corrected.meta.items() if not k.startswith("_")}
    # The conversion step's parameters were filled in after the correction copied the history.
    corrected.history = copy.deepcopy(vol.history) + corrected.history[len(vol.history):]
    write_pair(corrected, nifti_path, json_path, options.gz)
    report.written.append(Output(nifti_path, json_path, list(corrected.shape_xyz), series.series_number,
                                 list(corrected.warnings)))


def convert(in_path: Union[str, Path], out_dir: Union[str, Path], options: Optional[ConvertOptions] = None,
            progress: Optional[Callable[[str, int, int], None]] = None,
            warn: Optional[Callable[[str], None]] = None) -> ConvertReport:
    """Convert every image series found under `in_path` into `out_dir`."""
    options = options or ConvertOptions()
    in_path = Path(in_path)
    out_dir = Path(out_dir)
    if not in_path.exists():
        raise MedPrepError("input does not exist", in_path, "give a DICOM folder or file")
    if out_dir.exists() and not out_dir.is_dir():
        raise MedPrepError("output is not a folder", out_dir)
    used = placeholders(options.name_template)
    if options.anonymizer is not None and used & set(INPUT_PATH_PLACEHOLDERS):
        raise MedPrepError("the %f and %b placeholders (input folder and file name) cannot be used with --anonymize",
                           hint="file and folder names often carry patient names or IDs; use %s, %d, %p or %i")
    result = scan(in_path, ignore_derived=options.ignore_derived,
                  progress=(lambda d, t: progress("scanning", d, t)) if progress else None)
    report = ConvertReport(skipped=list(result.skipped), n_files=result.n_files)
    if options.anonymizer is not None:
        # File and folder names often carry patient names or IDs: no message names an input path.
        report.redact = path_scrubber(in_path, [f.path for s in result.series for f in s.files] +
                                      [s.path for s in result.skipped] + [a.path for a in result.annotations])
        if warn is not None:
            warn = _redacted(warn, report.redact)
    if not result.series:
        return report
    out_dir.mkdir(parents=True, exist_ok=True)
    folder_name = (in_path if in_path.is_dir() else in_path.parent).resolve().name
    taken: set = set()
    ext = ".nii.gz" if options.gz else ".nii"
    for i, series in enumerate(result.series):
        if progress:
            progress("converting", i + 1, len(result.series))
        label = _series_label(series)
        if options.anonymizer is not None and _withhold_burned_in(series, options.anonymizer, label, report, warn):
            continue
        try:
            vol = volume_from_series(series, options)
        except MedPrepError as exc:
            report.failed.append(Skipped(Path(exc.path or series.files[0].path), f"{label}: {exc.what}"))
            if warn:
                warn(f"{label} not converted: {exc.one_line()}")
            continue
        except MemoryError:
            where = series.files[0].path
            report.failed.append(Skipped(where, f"{label}: not enough memory"))
            if warn:
                warn(f"{label} not converted: not enough memory to assemble it ({where})")
            continue
        except Exception as exc:  # a bug in MedPrep, never blamed on the data; the other series go on
            if options.debug:
                raise
            where = series.files[0].path
            report.failed.append(Skipped(where, f"{label}: internal error: {exc.__class__.__name__}: {exc}"))
            report.internal_errors += 1
            if warn:
                warn(f"{label} not converted: internal error ({exc.__class__.__name__}: {exc}) ({where}); "
                     "this is a bug in MedPrep, please report it (`medprep --debug convert ...` shows the traceback)")
            continue
        ds0 = series.first
        if options.anonymizer is not None:
            # Names and sidecar fields come from a de-identified copy; the input stays untouched.
            ds0 = options.anonymizer.anonymize(copy.deepcopy(ds0))
        base = render_name(options.name_template, fields_from_dataset(ds0, folder_name, series.files[0].path.name))
        name = unique_name(base, taken, postfix_for(options.name_template, series.postfix) or None)
        targets = _targets(out_dir, name, ext, options, label, report, warn)
        if targets is None:
            continue
        nifti_path, json_path = targets
        if options.anonymizer is not None:
            # Header-derived sidecar fields come from the de-identified header only.
            original = dicom_fields(series.first)
            vol.meta = {k: v for k, v in vol.meta.items() if k not in original}
            vol.meta.update(dicom_fields(ds0))
            vol.warnings = [report.redact(w) for w in vol.warnings]
        corrected = _tilt_spacing_volume(vol, options, series, label, warn)
        gradients = vol.meta.get("_gradient_table")
        grid = _annotation_grid(vol, result.annotations_of(series) if options.annotations else [])
        vol.meta = {k: v for k, v in vol.meta.items() if not k.startswith("_")}
        vol.history[-1]["params"] = options.params()
        write_pair(vol, nifti_path, json_path, options.gz)
        if gradients is not None:
            write_gradients(gradients, out_dir / name)
        for w in vol.warnings:
            if warn:
                warn(f"{name}: {w}")
        report.written.append(Output(nifti_path, json_path, list(vol.shape_xyz), series.series_number,
                                     list(vol.warnings)))
        if corrected is not None:
            _write_tilt_spacing(corrected, vol, name, out_dir, ext, taken, options, series, report, warn)
        if grid is not None:
            _write_annotations(result.annotations_of(series), grid, name, out_dir, ext, taken, options, series,
                               report, warn)
    if options.annotations:
        for a in result.annotations:
            if a.missing_reference:
                report.failed.append(Skipped(a.path, f"{a.kind}: referenced image series not found"))
                if warn:
                    warn(report.redact(f"{a.kind} not converted: the image series it references is not among the "
                                       f"input files ({a.path})"))
    return report


def _annotation_grid(vol: Volume, annotations: List[Any]) -> Any:
    """The image grid the series' annotations go on (taken while the volume keeps its slice positions)."""
    if not annotations:
        return None
    from .annotations import ImageGrid

    return ImageGrid.from_volume(vol)


def _write_annotations(annotations: List[Any], grid: Any, name: str, out_dir: Path, ext: str, taken: set,
                       options: ConvertOptions, series: Series, report: ConvertReport,
                       warn: Optional[Callable[[str], None]]) -> None:
    """<image name>_seg / _rtstruct label map NIfTI + JSON for every SEG/RTSTRUCT of the series."""
    from .annotations import ANNOTATION_SUFFIX, read_annotation, write_labelmap

    for a in annotations:
        label = f"{a.kind} of {_series_label(series)}"
        try:
            labelmap = read_annotation(a.path, grid, keep_fractions=options.keep_fractions)
        except MedPrepError as exc:
            report.failed.append(Skipped(a.path, f"{label}: {exc.what}"))
            if warn:
                warn(report.redact(f"{label} not converted: {exc.one_line()}"))
            continue
        if options.anonymizer is not None:
            from .annotations import deidentify_names

            deidentify_names(labelmap, a.path, options.anonymizer)
            labelmap.warnings = [report.redact(w) for w in labelmap.warnings]
        target_name = unique_name(name + ANNOTATION_SUFFIX[a.kind], taken)
        targets = _targets(out_dir, target_name, ext, options, label, report, warn)
        if targets is None:
            continue
        nifti_path, json_path = targets
        write_labelmap(labelmap, nifti_path, json_path, gz=options.gz, onehot=options.label_onehot, overwrite=True)
        overlap = labelmap.overlap_voxels()
        notes = list(labelmap.warnings)
        if overlap and not (options.label_onehot or labelmap.fractional):
            notes.append(f"{overlap} voxel(s) in more than one segment: the highest number wins "
                         "(--label-onehot keeps them all)")
        for w in notes:
            if warn:
                warn(f"{target_name}: {w}")
        report.labelmaps.append(Output(nifti_path, json_path, list(labelmap.volume(options.label_onehot).shape_xyz),
                                       series.series_number, notes))


def _withhold_burned_in(series: Series, anonymizer: Any, label: str, report: ConvertReport,
                        warn: Optional[Callable[[str], None]]) -> bool:
    """Apply the burned-in annotation policy; True when the series must not be written."""
    from .anonymize import burned_in_reason

    reason = burned_in_reason(series.first)
    policy = anonymizer.options.on_burned_in
    if reason is None or policy == "keep":
        return False
    if policy == "fail":
        raise MedPrepError(f"{label}: pixels may show patient identity ({reason})",
                           report.redact(str(series.files[0].path)),
                           "check the images, then use --on-burned-in keep")
    report.failed.append(Skipped(series.files[0].path, f"{label}: withheld, pixels may show identity ({reason})"))
    if warn:
        warn(f"{label} not written: pixels may show patient identity ({reason}); check them, then use "
             "--on-burned-in keep")
    return True


def path_scrubber(in_path: Path, paths: Iterable[Path]) -> Callable[[str], str]:
    """A function that replaces, in a message, every given input path, its folders and the input
    root itself by "<input>"."""
    root = in_path if in_path.is_dir() else in_path.parent
    names = {str(in_path), str(root), str(root.resolve())}
    for p in paths:
        names.add(str(p))
        names.update(str(folder) for folder in p.parents if root in folder.parents)
    ordered = sorted((n for n in names if len(n) > 1), key=len, reverse=True)  # longest first

    def scrub(text: str) -> str:
        for name in ordered:
            if name in text:
                text = text.replace(name, "<input>")
        return text
    return scrub


def _redacted(warn: Callable[[str], None], redact: Callable[[str], str]) -> Callable[[str], None]:
    return lambda message: warn(redact(message))
