"""The README's speed figures come from the last full `make bench` (Testing/bench/RESULTS.json), never by hand."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "Testing" / "bench"))

import results_doc  # noqa: E402


def _recorded():
    return json.loads(results_doc.RESULTS_JSON.read_text()) if results_doc.RESULTS_JSON.is_file() else None


def test_readme_block_is_generated_from_the_recorded_run() -> None:
    data = _recorded()
    block = results_doc.readme_block(results_doc.README.read_text())
    assert block is not None, "README.md lost its generated benchmark block"
    assert block == results_doc.render_readme_block(data), \
        "README's benchmark table differs from Testing/bench/RESULTS.json: run `python Testing/bench/results_doc.py`"


def test_results_md_is_generated_from_the_recorded_run() -> None:
    data = _recorded()
    if data is None:
        assert not results_doc.RESULTS_MD.exists(), "RESULTS.md without RESULTS.json"
        return
    assert results_doc.RESULTS_MD.read_text() == results_doc.render_results_md(data)
    assert {"date", "machine", "cpus", "load_average_before_after"} <= set(data["meta"])
    assert all("ratio" in r and "target" in r for r in data["rows"])


def test_a_hand_edited_figure_is_caught() -> None:
    data = {"meta": {"date": "2026-01-01T00:00:00+00:00", "machine": "x86_64", "cpus": 2, "python": "3.11",
                     "load_average_before_after": [0.1, 0.2], "duration_s": 600.0},
            "rows": [{"bench": "run", "case": "c", "ours_s": 2.0, "anchor": "a", "anchor_s": 1.0, "ratio": 2.0,
                      "target": ">= 1.7", "ok": True, "unit": "s", "note": ""}]}
    block = results_doc.render_readme_block(data)
    assert "| 2 | >= 1.7 | met |" in block
    assert block.replace("| 2 |", "| 2.5 |") != results_doc.render_readme_block(data)
