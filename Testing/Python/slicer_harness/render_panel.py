"""The README's picture of the MedPrep panel, rendered outside Slicer by the harness on the demo data.

    python Testing/Python/slicer_harness/render_panel.py [DEMO_DIR] [OUT.png]

DEMO_DIR is what `make demo` (`medprep demo`) writes (default demo-output/); its DICOM is written
there first when missing. The panel is driven through its own buttons: Scan, Load, a preset and
Apply; what it shows is what MedPrep computed from that data. Widgets are PySide6's with the
harness's CTK and qMRML stand-ins, so they look like Qt's, not like Slicer's.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path[:0] = [str(HERE.parent), str(ROOT)]

import slicer_harness  # noqa: E402

SCREENSHOT = ROOT / "Resources" / "Screenshots" / "MedPrep-panel.png"
WIDTH = 460


def demoDicom(demo: Path, slices: int = 200) -> Path:
    """The DICOM of `medprep demo` in `demo`/dicom, written the same way when it is not there yet."""
    from MedPrepLib.cli.demo_cmd import write_sample
    from MedPrepSample import write_ct_series, write_cxr

    dicom = demo / "dicom"
    write_sample(dicom / "ct", slices, False, lambda d: write_ct_series(d, n_slices=slices, series_number=1))
    write_sample(dicom / "cxr", 1, False, lambda d: [write_cxr(d, series_number=2)])
    return dicom


def renderPanel(demo: Path, path: Path = SCREENSHOT, slices: int = 200) -> Path:
    dicom = demoDicom(demo, slices)
    slicer = slicer_harness.install()
    module = slicer_harness.loadMedPrep()
    panel = module.widgetRepresentation()
    module.enter()
    widget = module._widget
    ui = widget.ui
    ui.inputFolderButton.directory = str(dicom)
    ui.scanButton.click()
    ui.seriesTable.selectRow(0)
    ui.loadButton.click()
    ui.anonKeyLineEdit.text = "project-key"
    ui.presetComboBox.currentIndex = ui.presetComboBox.findText("ct-liver")
    ui.applyPreprocessButton.click()
    ui.saveFolderButton.directory = str(demo / "nifti")
    for section in ("anonymizeCollapsibleButton", "preprocessCollapsibleButton", "qaCollapsibleButton",
                    "saveCollapsibleButton"):
        getattr(ui, section).collapsed = False
    panel.resize(WIDTH, 10)
    panel.adjustSize()
    panel.resize(WIDTH, panel.sizeHint.height())
    slicer.app.processEvents()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not panel.grab().save(str(path)):
        raise RuntimeError(f"cannot write {path}")
    return path


if __name__ == "__main__":
    reason = slicer_harness.unavailable()
    if reason:
        sys.exit(f"render_panel: {reason}")
    demo = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "demo-output"
    print(renderPanel(demo, Path(sys.argv[2]) if len(sys.argv) > 2 else SCREENSHOT))
