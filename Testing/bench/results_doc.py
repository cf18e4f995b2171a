"""The committed record of the last full `make bench`: Testing/bench/RESULTS.{json,md} and the README's table.

`run_bench.py` calls `publish` after a full run. Figures reach the README only through here, so a
number typed by hand into the README's benchmark block makes `Testing/Python/test_bench_results.py`
fail. `python Testing/bench/results_doc.py` rewrites RESULTS.md and the README block from RESULTS.json.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS_JSON = HERE / "RESULTS.json"
RESULTS_MD = HERE / "RESULTS.md"
README = ROOT / "README.md"
BEGIN = "<!-- bench-results: begin (generated from Testing/bench/RESULTS.json by Testing/bench/results_doc.py) -->"
END = "<!-- bench-results: end -->"


def _num(value, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    else:
        text = str(value)
    return f"{text} {unit}".strip()


def _verdict(ok) -> str:
    return "info" if ok is None else ("met" if ok else "MISSED")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def meta_line(meta: dict) -> str:
    load = meta.get("load_average_before_after") or ["?", "?"]
    return (f"Run of {meta['date']} on {meta['machine']} ({meta['cpus']} CPUs), Python {meta['python']}, "
            f"load average {load[0]} before and {load[1]} after, {meta['duration_s']:.0f} s in all"
            + (f"; MedPrep's modules {meta['bytecode']}." if meta.get("bytecode") else "."))


def render_results_md(data: dict) -> str:
    meta, rows = data["meta"], data["rows"]
    out = ["# Last full `make bench`", "", meta_line(meta), "",
           "Ratio = ours / anchor, both measured in this run; the target applies to the ratio.", "",
           "| bench | case | ours | anchor | anchor value | ratio | target | verdict | note |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        unit = r.get("unit", "s")
        out.append("| " + " | ".join(_cell(c) for c in (
            r["bench"], r["case"], _num(r.get("ours_s"), unit), r.get("anchor") or "",
            _num(r.get("anchor_s"), unit), _num(r.get("ratio")), r.get("target") or "",
            _verdict(r.get("ok")), r.get("note") or "")) + " |")
    return "\n".join(out) + "\n"


def render_readme_block(data: dict | None) -> str:
    if data is None:
        return "\n".join([BEGIN, "", "No full `make bench` run is recorded yet.", "", END])
    rows = [r for r in data["rows"] if r.get("target")]
    out = [BEGIN, "", meta_line(data["meta"]), "",
           "| bench | case | ratio (ours / anchor) | target | verdict |", "|---|---|---|---|---|"]
    for r in rows:
        out.append("| " + " | ".join(_cell(c) for c in (
            r["bench"], f"{r['case']} vs {r.get('anchor') or ''}".strip(), _num(r.get("ratio")),
            r["target"], _verdict(r.get("ok")))) + " |")
    out += ["", "All rows, with the measured values: [`Testing/bench/RESULTS.md`](Testing/bench/RESULTS.md).", "", END]
    return "\n".join(out)


def readme_block(text: str) -> str | None:
    """The README's generated block as it stands, or None when the README has none."""
    start, stop = text.find(BEGIN), text.find(END)
    if start < 0 or stop < start:
        return None
    return text[start:stop + len(END)]


def publish(data: dict) -> None:
    """Write RESULTS.json and RESULTS.md, and replace the README's block (which must exist)."""
    RESULTS_JSON.write_text(json.dumps(data, indent=2) + "\n")
    RESULTS_MD.write_text(render_results_md(data))
    text = README.read_text()
    old = readme_block(text)
    if old is None:
        raise SystemExit(f"results_doc: {README} has no '{BEGIN}' ... '{END}' block to fill")
    README.write_text(text.replace(old, render_readme_block(data)))


if __name__ == "__main__":
    if not RESULTS_JSON.is_file():
        sys.exit(f"results_doc: {RESULTS_JSON} not found: run `make bench` first")
    publish(json.loads(RESULTS_JSON.read_text()))
    print(f"wrote {RESULTS_MD} and the README block")
