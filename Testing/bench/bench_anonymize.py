"""De-identification speed: `medprep anonymize` against dicognito and dicom-anonymizer, files per second.

Case: the synthetic 512x512 CT series from MedPrepSample (600 slices; 100 with --quick). Every
tool runs as a command in a fresh process on the same input, writes into an emptied folder, gets
one untimed run that checks every file was written, then the timed runs go round-robin over the
tools (best of 3). Target: at least twice the files per second of the
faster of the two anchors, i.e. a time ratio <= 0.5.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from timing import fresh_dir, measure, measure_all, row, tool

from MedPrepSample import write_ct_series

BENCH = "anonymize"
TARGET = "<= 0.5"


def _commands(src: Path, out: Path) -> dict[str, list[str]]:
    """The commands of the tools that are installed (the anchors come with the bench extra)."""
    medprep, dicom_anonymizer = tool("medprep"), tool("dicom-anonymizer")
    cmds = {}
    if medprep:
        cmds["ours"] = [medprep, "anonymize", str(src), str(out), "--key", "bench-key"]
    if importlib.util.find_spec("dicognito"):
        # dicognito's console script is broken in 0.19.0 (main() wants its arguments): run the module.
        cmds["dicognito"] = [sys.executable, "-m", "dicognito", "--quiet", "-o", str(out), str(src)]
    if dicom_anonymizer:
        cmds["dicom-anonymizer"] = [dicom_anonymizer, str(src), str(out)]
    return cmds


def run(workdir: Path, quick: bool) -> list[dict]:
    n = 100 if quick else 600
    src = workdir / f"ct{n}"
    if not src.exists():
        write_ct_series(src, n_slices=n)
    files = len([p for p in src.rglob("*") if p.is_file()])
    out = workdir / "out"
    repeats = 1 if quick else 3
    fps: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    cmds = _commands(src, out)
    for name in ("ours", "dicognito", "dicom-anonymizer"):
        if name not in cmds:
            errors[name] = "not installed (pip install -e .[bench])"
    for name, cmd in cmds.items():
        # One untimed run alone, to check that the tool writes every file.
        m = measure(cmd, 0, prepare=fresh_dir(out))
        written = len([p for p in out.rglob("*") if p.is_file()])
        if m.error or written != files:
            errors[name] = m.error or f"wrote {written} of {files} files"
    timed = {k: v for k, v in cmds.items() if k not in errors}
    for name, m in measure_all(timed, repeats, prepare=fresh_dir(out)).items():
        if m.error:
            errors[name] = m.error
        else:
            fps[name] = files / m.best_s
    case = f"CT {n}x512x512, files/s"
    anchors = {k: v for k, v in fps.items() if k != "ours" and v}
    ours = fps.get("ours")
    rows = []
    if anchors:
        best = max(anchors, key=anchors.get)
        # ratio = time per file ours / anchor = anchor files/s / ours files/s.
        r = row(BENCH, case, 1.0 / ours if ours else None, best, 1.0 / anchors[best], TARGET, unit="s/file",
                note=", ".join(f"{k} {v:.0f} files/s" for k, v in fps.items()))
        rows.append(r)
    for name, err in errors.items():
        rows.append(row(BENCH, f"{case}: {name}", None, name, None, note=err))
    return rows
