"""`medprep anonymize` on damaged input: every damaged file is reported, none is published.

One test per kind of damage. Each checks the exit status, that stderr names the problem (counted
per reason; the file named only with --show-paths), that nothing damaged reaches a final name (nor
is anything left in staging) and that the input is byte-identical afterwards.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, List

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless

import MedPrepSample as sample
from MedPrepLib.cli.main import main

GOOD = 3  # slices of the intact series written beside every damaged file


def _series(folder: Path, number: int, n: int = GOOD, **kw) -> List[Path]:
    volume = (np.arange(n * 8 * 10).reshape(n, 8, 10) % 500).astype(np.int16)
    return sample.write_series(folder, volume, series_number=number, **kw)


def _hashes(root: Path) -> Dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _run(tmp_path: Path, capsys, *extra: str):
    """Anonymize tmp_path/in (checked unchanged afterwards); (exit status, stderr, stdout, output files)."""
    inp, out = tmp_path / "in", tmp_path / "out"
    before = _hashes(inp)
    rc = main(["anonymize", str(inp), str(out), "--key", "k", *extra])
    captured = capsys.readouterr()
    assert _hashes(inp) == before, "the input was modified"
    assert "Traceback" not in captured.err
    files = sorted(p for p in out.rglob("*") if p.is_file()) if out.exists() else []
    assert not [p for p in out.rglob(".*")] if out.exists() else True  # no staging left behind
    return rc, captured.err, captured.out, files


def _intact(files: List[Path]) -> None:
    """Every output file is a complete image."""
    for path in files:
        ds = pydicom.dcmread(path)
        assert len(ds.PixelData) == ds.Rows * ds.Columns * ds.BitsAllocated // 8, path


@pytest.fixture
def good(tmp_path) -> List[Path]:
    return _series(tmp_path / "in" / "good", 1)


def test_zero_byte_dcm(tmp_path, capsys, good):
    (tmp_path / "in" / "IM0004.dcm").write_bytes(b"")
    rc, err, out, files = _run(tmp_path, capsys)
    assert rc == 0 and len(files) == GOOD
    assert "1 file(s) not written: empty file named like DICOM; --show-paths names them" in err
    assert "skipped 1 files (1 empty file named like DICOM)" in out


def test_random_bytes_dcm(tmp_path, capsys, good):
    noise = tmp_path / "in" / "IM0005.dcm"
    noise.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (tmp_path / "in" / "README.txt").write_text("export notes\n")  # unrelated: counted, no warning
    rc, err, out, files = _run(tmp_path, capsys, "--show-paths")
    assert rc == 0 and len(files) == GOOD
    assert f"not written: unreadable file named like DICOM: no DICOM header ({noise})" in err
    assert "README" not in err and err.count("warning") == 1
    assert "skipped 2 files (1 not DICOM, 1 unreadable file named like DICOM)" in out


def test_pixel_data_cut_short(tmp_path, capsys, good):
    cut = _series(tmp_path / "in" / "cut", 2, n=1)[0]
    cut.write_bytes(cut.read_bytes()[:-50])
    rc, err, out, files = _run(tmp_path, capsys)
    assert rc == 0 and len(files) == GOOD
    _intact(files)
    assert "1 file(s) withheld: pixel data cut short; --show-paths names them; --keep-damaged-pixels " \
           "writes them" in err
    assert "withheld 1 files (1 with damaged pixel data)" in out


def test_pixel_data_length_mismatch(tmp_path, capsys, good):
    short, long = _series(tmp_path / "in" / "odd", 2, n=2)
    for path, change in ((short, lambda b: b[:-100]), (long, lambda b: b + b"\0" * 64)):
        ds = pydicom.dcmread(path)
        ds.PixelData = change(ds.PixelData)
        ds.save_as(path)
    rc, err, out, files = _run(tmp_path, capsys, "--show-paths")
    assert rc == 0 and len(files) == GOOD
    _intact(files)
    for path, size in ((short, 60), (long, 224)):
        assert f"withheld: pixel data length mismatch: {size} bytes where Rows x Columns x samples x frames " \
               f"x bits give 160 ({path})" in err
    assert "withheld 2 files (2 with damaged pixel data)" in out


def test_damaged_pixels_are_written_only_on_request(tmp_path, capsys, good):
    bad = _series(tmp_path / "in" / "odd", 2, n=1)[0]
    ds = pydicom.dcmread(bad)
    ds.PixelData = ds.PixelData[:-100]
    ds.save_as(bad)
    rc, err, out, files = _run(tmp_path, capsys, "--keep-damaged-pixels")
    assert rc == 0 and len(files) == GOOD + 1
    assert "1 file(s) written with damaged pixel data: pixel data length mismatch" in err
    assert "anonymized 4 files in 2 series (1 with damaged pixel data, kept on request); withheld 0 files" in out


def test_compressed_pixel_data_without_its_frame(tmp_path, capsys, good):
    if not sample.can_encode(RLELossless):
        pytest.skip("no RLE encoder here")
    empty, cut = _series(tmp_path / "in" / "rle", 2, n=2, transfer_syntax=RLELossless)
    ds = pydicom.dcmread(empty)
    ds.PixelData = encapsulate([])  # the offset table, then no fragment at all
    ds.save_as(empty)
    cut.write_bytes(cut.read_bytes()[:-20])
    rc, err, out, files = _run(tmp_path, capsys)
    assert rc == 0 and len(files) == GOOD
    assert "1 file(s) withheld: pixel data incomplete" in err and "1 file(s) withheld: pixel data cut short" in err


def test_only_damaged_files_fail_with_one_error_line(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.dcm").write_bytes(b"")
    cut = _series(tmp_path / "in" / "cut", 2, n=1)[0]
    cut.write_bytes(cut.read_bytes()[:-50])
    rc, err, out, files = _run(tmp_path, capsys)
    assert rc == 1 and files == []
    assert [line for line in err.splitlines() if "error" in line] == \
        [f"medprep: error: nothing written: 2 damaged DICOM file(s) and no intact image ({tmp_path / 'in'}); "
         "see the warnings above"]
