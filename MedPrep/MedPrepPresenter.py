"""What the MedPrep panel shows, computed from plain data, and applied to widgets by explicit setters.

Kept apart from MedPrep.py so that it runs without Slicer: the functions take plain data, or simple
widgets (QTableWidget, QProgressBar, QLabel...) through their methods only, never PythonQt's property
attributes, so the tests check the data without Qt and the panel in Slicer's Python layer
(Testing/Python/slicer_harness).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

from MedPrepLib.anonymize.options import user_options
from MedPrepLib.naming import safe_name

# Parameter-node choices shown in combo boxes; the tests check them against MedPrepLib's step catalogue.
KEEP_ORIENTATION = "keep"
ORIENTATIONS = [KEEP_ORIENTATION, "RAS", "LPS", "LAS", "RAI"]
INTERPOLATIONS = ["linear", "bspline", "nearest"]
NO_INTENSITY = "none"
INTENSITY_METHODS = [NO_INTENSITY, "clip", "percentile_clip", "zscore", "minmax"]

# The parameters each intensity method takes from the "Range" pair, and what the pair means for it.
_RANGE_PARAMETERS = {
    "clip": (("min", "max"), "Clip to:"),
    "percentile_clip": (("lower", "upper"), "Percentiles:"),
    "minmax": (("out_min", "out_max"), "Output range:"),
}



@dataclass(frozen=True)
class AnonymizeControl:
    """The panel's control of one MedPrepLib AnonymizeOptions field, as MedPrepLib describes the option."""

    option: str                 # AnonymizeOptions field, e.g. "keep_uids"
    parameter: str              # parameter-node field, the option in camelCase: "keepUids"
    widget: str                 # object name of the control: "keepUidsCheckBox" (a combo box with choices)
    label: str
    help: str
    exclusive: str              # options of one non-empty group exclude each other
    choices: tuple[str, ...]
    default: Any


def anonymizeControls() -> list[AnonymizeControl]:
    """One control per user-facing anonymization option (MedPrepLib.anonymize.options.user_options), in
    its order: a new option there appears in the panel, bound to the parameter node, with no edit here."""
    controls = []
    for option in user_options():
        meta = option.metadata
        first, *rest = option.name.split("_")
        parameter = first + "".join(word.capitalize() for word in rest)
        choices = tuple(meta["choices"])
        controls.append(AnonymizeControl(
            option=option.name, parameter=parameter, widget=parameter + ("ComboBox" if choices else "CheckBox"),
            label=meta["label"], help=meta["help"], exclusive=meta["exclusive"], choices=choices,
            default=option.default))
    return controls


# Anonymization options: parameter-node field -> MedPrepLib AnonymizeOptions field.
ANONYMIZE_OPTIONS = {control.parameter: control.option for control in anonymizeControls()}

SERIES_COLUMNS = ["#", "Modality", "Description", "Size", "Files", "Warnings"]
HEADER_COLUMNS = ["Tag", "Keyword", "VR", "Value"]
COMPARE_COLUMNS = ["Tag", "Keyword", "VR", "Original", "Anonymized"]
REMOVED = "(removed)"
PRIVATE_MARK = "[private]"


class Cancelled(Exception):
    """The user pressed Cancel; raised from a progress callback to stop MedPrepLib between units of work."""


# ---------------------------------------------------------------------------------------------
# Tables


def seriesRows(seriesList: Sequence[Any]) -> list[list[str]]:
    """One row per discovered series: number, modality, description, size, files and warnings."""
    rows = []
    for series in seriesList:
        summary = series.summary()
        size = f"{summary['columns']}x{summary['rows']}x{summary['frames'] * summary['slices_per_frame']}"
        rows.append([
            "" if summary["series_number"] is None else str(summary["series_number"]),
            summary["modality"],
            summary["description"],
            size,
            str(summary["files"]),
            "; ".join(summary["warnings"]),
        ])
    return rows


def scanStatus(result: Any) -> str:
    """One line under the series table: what was found and what was left out, and why."""
    text = f"{len(result.series)} series in {result.n_files} files"
    reasons = result.skipped_by_reason()
    if reasons:
        detail = ", ".join(f"{reason}: {count}" for reason, count in sorted(reasons.items()))
        text += f"; {len(result.skipped)} skipped ({detail})"
    return text


def _keywordText(row: Any) -> str:
    keyword = row.keyword or row.name
    if row.is_private:
        creator = f" {row.private_creator}" if row.private_creator else ""
        return f"{PRIVATE_MARK}{creator} {keyword}".rstrip()
    return keyword


def _tagText(row: Any) -> str:
    # Indentation shows the nesting of sequence items, as in DICOM dump tools.
    return "    " * row.depth + row.tag


def headerTableRows(rows: Sequence[Any]) -> list[list[str]]:
    """Tag (indented by sequence depth), keyword (private ones marked), VR, value."""
    return [[_tagText(r), _keywordText(r), r.vr, r.value] for r in rows]


def comparisonTableRows(original: Sequence[Any], anonymized: Sequence[Any],
                        shownPaths: set | None = None) -> list[list[str]]:
    """Original | anonymized values matched by position in the data set; removed and added rows shown.

    Rows keep the original order; attributes the anonymizer adds (e.g. PatientIdentityRemoved)
    follow at the end with an empty original value. `shownPaths` limits the rows (a search) without
    breaking the pairing: a row found only by its original value still shows its anonymized one.
    """
    after: dict[str, Any] = {r.path: r for r in anonymized}
    seen = set()
    table = []
    for r in original:
        seen.add(r.path)
        if shownPaths is None or r.path in shownPaths:
            new = after.get(r.path)
            table.append([_tagText(r), _keywordText(r), r.vr, r.value, REMOVED if new is None else new.value])
    for r in anonymized:
        if r.path not in seen and (shownPaths is None or r.path in shownPaths):
            table.append([_tagText(r), _keywordText(r), r.vr, "", r.value])
    return table


def changedRowCount(table: Sequence[Sequence[str]]) -> int:
    return sum(1 for row in table if row[3] != row[4])


def fillTable(table: Any, columns: Sequence[str], rows: Sequence[Sequence[str]],
              itemClass: Callable[[str], Any]) -> None:
    """Replace the content of a QTableWidget; `itemClass` is QTableWidgetItem of the running Qt binding."""
    table.clearContents()
    table.setColumnCount(len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = itemClass(str(text))
            item.setToolTip(str(text))
            table.setItem(r, c, item)
    table.resizeColumnsToContents()


# ---------------------------------------------------------------------------------------------
# Enable rules and status


@dataclass
class PanelState:
    """What the enable rules depend on, gathered by the widget from its parameter node and logic."""

    inputFolder: str = ""
    seriesSelected: bool = False
    inputVolumeFromDicom: bool = False
    inputVolume: bool = False
    anonymizedFolder: str = ""
    anonymizeOptions: Mapping[str, Any] = field(default_factory=dict)  # parameter-node field -> value
    hasSteps: bool = False
    intensity: str = NO_INTENSITY
    outputVolume: bool = False
    saveFolder: str = ""
    saveName: str = ""
    busy: bool = False


def enableRules(s: PanelState) -> dict[str, bool]:
    """Widget object name -> enabled. While a task runs only Cancel stays active."""
    idle = not s.busy
    return {
        "scanButton": idle and bool(s.inputFolder),
        "loadButton": idle and s.seriesSelected,
        # The preview shows the header of the loaded series; the run de-identifies the whole scanned folder.
        "previewAnonymizationButton": idle and s.inputVolumeFromDicom,
        "anonymizeButton": idle and bool(s.inputFolder) and bool(s.anonymizedFolder),
        **exclusiveOptionRules(s.anonymizeOptions),
        "applyPreprocessButton": idle and s.inputVolume and s.hasSteps,
        "intensityLowSpinBox": s.intensity in _RANGE_PARAMETERS,
        "intensityHighSpinBox": s.intensity in _RANGE_PARAMETERS,
        "compareButton": idle and s.inputVolume and s.outputVolume,
        "overlayButton": idle and s.inputVolume and s.outputVolume,
        "fadeSlider": s.inputVolume and s.outputVolume,
        "saveButton": idle and s.outputVolume and bool(s.saveFolder) and bool(s.saveName),
        "exportPipelineButton": idle and s.hasSteps,
        "cancelButton": s.busy,
    }


def exclusiveOptionRules(values: Mapping[str, Any]) -> dict[str, bool]:
    """Control of an option -> enabled: options of one exclusive group (MedPrepLib refuses two of them,
    e.g. shifted and full dates) grey out while another of the group is chosen."""
    controls = anonymizeControls()
    return {c.widget: not any(values.get(o.parameter) for o in controls if o.exclusive == c.exclusive and o is not c)
            for c in controls if c.exclusive}


def applyEnableRules(ui: Any, s: PanelState) -> None:
    for name, enabled in enableRules(s).items():
        getattr(ui, name).setEnabled(enabled)


def intensityRangeLabel(method: str) -> str:
    return _RANGE_PARAMETERS[method][1] if method in _RANGE_PARAMETERS else "Range:"


class ProgressReporter:
    """Progress callback for MedPrepLib's long calls: updates the bar, keeps the GUI alive, honours Cancel.

    `processEvents` is slicer.app.processEvents in Slicer; calling it between units of work lets the
    Cancel button be pressed while MedPrepLib runs on the main thread (MRML must not be touched
    from another thread, and the work is split finely enough that the GUI stays responsive).
    """

    def __init__(self, progressBar: Any, statusLabel: Any, processEvents: Callable[[], None]):
        self.progressBar = progressBar
        self.statusLabel = statusLabel
        self.processEvents = processEvents
        self.cancelled = False

    def start(self, text: str) -> None:
        self.cancelled = False
        self.progressBar.setRange(0, 0)  # busy indicator until the first count arrives
        self.statusLabel.setText(text)
        self.processEvents()

    def __call__(self, done: int, total: int) -> None:
        if total > 0:
            self.progressBar.setRange(0, total)
            self.progressBar.setValue(done)
        self.processEvents()
        if self.cancelled:
            raise Cancelled()

    def cancel(self) -> None:
        self.cancelled = True

    def finish(self, text: str) -> None:
        self.progressBar.setRange(0, 100)
        self.progressBar.setValue(0 if self.cancelled else 100)
        self.statusLabel.setText(text)


# ---------------------------------------------------------------------------------------------
# Pipeline steps from the form


@dataclass
class PreprocessSettings:
    """The step fields of the Preprocess section (a parameter-node snapshot)."""

    orientation: str = "RAS"
    resample: bool = False
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    interpolation: str = "linear"
    cropPad: bool = False
    size: tuple[int, int, int] = (128, 128, 128)
    intensity: str = NO_INTENSITY
    intensityRange: tuple[float, float] = (0.0, 1.0)


def pipelineSteps(s: PreprocessSettings) -> list[dict[str, Any]]:
    """The form as pipeline steps ({"step": name, parameter: value...}, as in a pipeline file).

    Geometry comes first and intensity last, so intensities are normalized on the final grid.
    """
    steps: list[dict[str, Any]] = []
    if s.orientation != KEEP_ORIENTATION:
        steps.append({"step": "orient", "axcodes": s.orientation})
    if s.resample:
        steps.append({"step": "resample", "spacing": [float(v) for v in s.spacing],
                      "interpolator": s.interpolation})
    if s.cropPad:
        steps.append({"step": "crop_pad", "shape": [int(v) for v in s.size]})
    if s.intensity != NO_INTENSITY:
        step: dict[str, Any] = {"step": s.intensity}
        if s.intensity in _RANGE_PARAMETERS:
            low, high = _RANGE_PARAMETERS[s.intensity][0]
            step.update({low: float(s.intensityRange[0]), high: float(s.intensityRange[1])})
        steps.append(step)
    return steps


def settingsFromSteps(steps: Sequence[dict[str, Any]]) -> tuple[PreprocessSettings, list[str]]:
    """The form filled from pipeline steps (a preset), and the steps the form cannot show.

    Steps the form has no field for are reported rather than dropped silently: the panel says
    that Apply would not reproduce the preset.
    """
    s = PreprocessSettings(orientation=KEEP_ORIENTATION)
    unsupported = []
    for step in steps:
        name = step["step"]
        params = {k: v for k, v in step.items() if k != "step"}
        if name == "orient" and set(params) <= {"axcodes"} and params.get("axcodes", "RAS") in ORIENTATIONS:
            s.orientation = params.get("axcodes", "RAS")
        elif name == "resample" and _resampleFits(params) and not s.resample:
            s.resample = True
            s.spacing = tuple(float(v) for v in params["spacing"])
            s.interpolation = params.get("interpolator", "linear")
        elif name == "crop_pad" and set(params) <= {"shape"} and len(params.get("shape") or []) == 3:
            s.cropPad = True
            s.size = tuple(int(v) for v in params["shape"])
        elif name in INTENSITY_METHODS and s.intensity == NO_INTENSITY and _intensityFits(name, params):
            s.intensity = name
            if name in _RANGE_PARAMETERS:
                low, high = _RANGE_PARAMETERS[name][0]
                s.intensityRange = (float(params[low]), float(params[high]))
        else:
            unsupported.append(name)
    return s, unsupported


def _resampleFits(params: dict[str, Any]) -> bool:
    return (set(params) <= {"spacing", "interpolator"} and len(params.get("spacing") or []) == 3
            and params.get("interpolator", "linear") in INTERPOLATIONS)


def _intensityFits(name: str, params: dict[str, Any]) -> bool:
    if name not in _RANGE_PARAMETERS:
        return not params
    return set(params) == set(_RANGE_PARAMETERS[name][0]) and all(v is not None for v in params.values())


def defaultSaveName(description: str, seriesNumber: int | None) -> str:
    """A base name from the series number and description, made safe by the rule `medprep convert`
    names its files by (MedPrepLib.naming.safe_name)."""
    parts = ([f"{seriesNumber:03d}"] if seriesNumber is not None else []) + ([description] if description else [])
    return safe_name("_".join(parts))
