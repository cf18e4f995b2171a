"""DICOM SEG and RTSTRUCT in as label maps, label maps out as SEG.

Reference cases: ../shared/annotations (see its MANIFEST.md), one test per case. Synthetic cases:
a small CT from MedPrepSample with a SEG written by highdicom and RTSTRUCTs with known
polygons, on axial, oblique and shuffled-order series, checked voxel for voxel.
"""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from conftest import require_annotations
from MedPrepLib.annotations import ImageGrid, read_annotation
from MedPrepLib.annotations.export_seg import export_seg
from MedPrepLib.annotations.rtstruct import RTSTRUCT_CLASS, fill_polygons
from MedPrepLib.cli.main import main
from MedPrepLib.convert import ConvertOptions, convert, volume_from_series
from MedPrepLib.discovery import scan
from MedPrepLib.errors import MedPrepError
from MedPrepSample import write_series

hd = pytest.importorskip("highdicom")

# ---------------------------------------------------------------- reference cases

CASES = {  # case: (kind, Dice floor per ROI, voxel-count tolerance)
    "seg_ct_overlap_5seg": "SEG",
    "seg_ct_bitpack_23x38": "SEG",
    "seg_ct_fractional_uneven": "SEG",
    "rt_ct_ibsi_phantom": "RTSTRUCT",
    "rt_ct_4roi_missing_slice": "RTSTRUCT",
}


def _on_ref(arr_xyz: np.ndarray, affine: np.ndarray, ref_affine: np.ndarray) -> np.ndarray:
    """Our (i, j, k) voxel order moved to dcm2niix's (it flips the row axis); voxel centres are the same."""
    t = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine),
                                        nib.orientations.io_orientation(ref_affine))
    return nib.orientations.apply_orientation(arr_xyz, t)


@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_case(case, tmp_path):
    root = require_annotations() / case
    report = convert(root, tmp_path, ConvertOptions(label_onehot=True, keep_fractions=True))
    assert len(report.labelmaps) == 1, [f.reason for f in report.failed]
    out = report.labelmaps[0]
    img = nib.load(str(report.written[0].nifti))
    lab4 = nib.load(str(out.nifti))
    assert lab4.shape[:3] == img.shape and np.allclose(lab4.affine, img.affine)
    ref_img = nib.load(str(root / "ref" / "image.nii.gz"))
    ref4 = np.asarray(nib.load(str(root / "ref" / "segments.nii.gz")).dataobj)
    ours4 = np.asarray(lab4.dataobj)
    side = json.loads(Path(out.sidecar).read_text())
    ref_side = json.loads((root / "ref" / "segments.json").read_text())
    ref_rows = ref_side.get("segments") or ref_side.get("rois")
    assert [s["label_value"] for s in side["Segments"]] == [r["label_value"] for r in ref_rows]
    figures = []
    for n, row in enumerate(ref_rows):
        ours = _on_ref(ours4[..., n], img.affine, ref_img.affine)
        ref = ref4[..., row["volume_index"]]
        if CASES[case] == "SEG":
            assert np.array_equal(ours.astype(np.float32), ref.astype(np.float32)), row["label_value"]
        a, b = ours > 0, ref > 0
        dice = 2 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))
        figures.append((row["label_value"], int(a.sum()), int(b.sum()), round(dice, 4)))
        assert dice >= 0.98 and abs(int(a.sum()) - int(b.sum())) <= 0.02 * b.sum(), figures
    print(case, "label, ours, reference, Dice:", figures)
    # The default 3D label map (highest number wins, fraction >= 0.5) equals the reference label map.
    label_dir = tmp_path / "label"
    report = convert(root, label_dir, ConvertOptions())
    ours3 = _on_ref(np.asarray(nib.load(str(report.labelmaps[0].nifti)).dataobj), img.affine, ref_img.affine)
    ref3 = np.asarray(nib.load(str(root / "ref" / "label.nii.gz")).dataobj)
    assert np.count_nonzero(ours3 != ref3) == 0
    side3 = json.loads(Path(report.labelmaps[0].sidecar).read_text())
    assert side3["OverlapVoxels"] == (3106 if case == "seg_ct_overlap_5seg" else 0)


def test_reference_rtstruct_reports_contours_off_the_series(tmp_path):
    root = require_annotations() / "rt_ct_4roi_missing_slice"
    report = convert(root, tmp_path, ConvertOptions())
    side = json.loads(Path(report.labelmaps[0].sidecar).read_text())
    assert side["Warnings"] == ["4 contours whose plane matches no slice: left out"]


def test_scan_lists_annotations_and_missing_references():
    root = require_annotations()
    result = scan(root / "seg_ct_overlap_5seg")
    assert [s.modality for s in result.series] == ["CT"]   # the SEG is no image series
    (a,) = result.annotations
    assert a.kind == "SEG" and a.names == ["GREEN", "ORANGE", "PURPLE", "LIGHT_BLUE", "DARK_BLUE"]
    assert not a.missing_reference and result.annotations_of(result.series[0]) == [a]
    alone = scan(root / "seg_ct_overlap_5seg" / "seg")
    assert alone.annotations[0].missing_reference and not alone.series


# ---------------------------------------------------------------- synthetic known answers

ROWS, COLS, NZ = 12, 16, 4


def _ct(folder: Path, row=(1.0, 0.0, 0.0), col=(0.0, 1.0, 0.0), names="sequential") -> Path:
    vol = np.zeros((NZ, ROWS, COLS), dtype=np.int16)
    write_series(folder, vol, spacing=(0.8, 1.2, 2.5), origin_lps=(-5.0, 7.0, 30.0), row_dir=row, col_dir=col,
                 file_names=names, series_uid=generate_uid())
    return folder


def _grid(folder: Path) -> ImageGrid:
    return ImageGrid.from_volume(volume_from_series(scan(folder).series[0]))


def _patient(grid: ImageGrid, k: float, cr: np.ndarray) -> np.ndarray:
    """Continuous (column, row) pixel coordinates on slice position k (may be fractional) -> LPS."""
    k0 = int(np.floor(k))
    base = grid.positions[k0] + (k - k0) * (grid.positions[min(k0 + 1, NZ - 1)] - grid.positions[k0])
    dr, dc = grid.spacing
    return base + np.outer(cr[:, 0] * dc, grid.row) + np.outer(cr[:, 1] * dr, grid.col)


def _rtstruct(path: Path, series_dir: Path, rois) -> Path:
    """An RT Structure Set; rois: [(number, name, [(k, (n, 2) column/row polygon), ...]), ...]."""
    first = pydicom.dcmread(str(sorted(series_dir.iterdir())[0]), stop_before_pixels=True)
    grid = _grid(series_dir)
    ds = Dataset()
    ds.SOPClassUID = RTSTRUCT_CLASS
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyInstanceUID = first.StudyInstanceUID
    ds.SeriesNumber = 9
    ds.StructureSetLabel = "test"
    for keyword in ("PatientName", "PatientID", "StudyDate"):
        setattr(ds, keyword, first.get(keyword, ""))
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = first.SeriesInstanceUID
    study = Dataset()
    study.RTReferencedSeriesSequence = Sequence([ref_series])
    frame = Dataset()
    frame.FrameOfReferenceUID = first.FrameOfReferenceUID
    frame.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    ds.StructureSetROISequence = Sequence()
    ds.ROIContourSequence = Sequence()
    for number, name, contours in rois:
        item = Dataset()
        item.ROINumber = number
        item.ROIName = name
        ds.StructureSetROISequence.append(item)
        rc = Dataset()
        rc.ReferencedROINumber = number
        rc.ROIDisplayColor = [255, 0, 0]
        rc.ContourSequence = Sequence()
        for k, poly in contours:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            pts = _patient(grid, k, np.asarray(poly, dtype=float))
            c.NumberOfContourPoints = len(pts)
            c.ContourData = [f"{v:.6f}" for v in pts.ravel()]
            rc.ContourSequence.append(c)
        ds.ROIContourSequence.append(rc)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RTSTRUCT_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    pydicom.dcmwrite(str(path), ds, **({"enforce_file_format": True} if pydicom.__version__[0] >= "3" else
                                       {"write_like_original": False}))
    return path


SQUARE = [(2.5, 3.5), (9.5, 3.5), (9.5, 8.5), (2.5, 8.5)]      # centres c 3..9, r 4..8
HOLE = [(4.5, 5.5), (6.5, 5.5), (6.5, 6.5), (4.5, 6.5)]        # centres c 5..6, r 6


def _expected_square(hole: bool) -> np.ndarray:
    m = np.zeros((ROWS, COLS), bool)
    m[4:9, 3:10] = True
    if hole:
        m[6, 5:7] = False
    return m


@pytest.mark.parametrize("geometry", ["axial", "oblique", "shuffled"])
def test_rtstruct_known_polygons(tmp_path, geometry):
    a = np.radians(25)
    kw = {"oblique": {"row": (np.cos(a), np.sin(a), 0.0), "col": (0.0, 0.0, -1.0)},
          "shuffled": {"names": "shuffled-noext"}}.get(geometry, {})
    series = _ct(tmp_path / "ct", **kw)
    rt = _rtstruct(tmp_path / "rt.dcm", series, [
        (3, "Body", [(1, SQUARE), (1, HOLE), (2, SQUARE)]),
        (5, "Off", [(1.5, SQUARE), (2, [(-20, -20), (-10, -20), (-10, -10)])]),   # between slices; outside
        (7, "Empty", []),
    ])
    lm = read_annotation(rt, _grid(series))
    assert [s.number for s in lm.segments] == [3, 5, 7]
    assert np.array_equal(lm.masks[0, 1], _expected_square(hole=True))
    assert np.array_equal(lm.masks[0, 2], _expected_square(hole=False))
    assert lm.masks[0, [0, 3]].sum() == 0 and lm.masks[1:].sum() == 0
    assert "1 contours whose plane matches no slice: left out" in lm.warnings
    assert "1 contours outside the image: left out" in lm.warnings
    assert "ROI(s) with no voxels on this image: Off, Empty" in lm.warnings
    with pytest.raises(MedPrepError, match="names found: Body, Off, Empty"):
        lm.select(["body", "liver"])
    picked = lm.select(["BODY"])
    assert picked.segments[0].label == 1 and picked.label_array().max() == 1


def test_fill_polygons_boundary_rule():
    # Two squares sharing the edge x = 4.0 (a column of centres): each centre is claimed exactly once.
    left = np.array([(0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0)])
    right = left + [4.0, 0.0]
    a, b = fill_polygons([left], 6, 10), fill_polygons([right], 6, 10)
    assert not (a & b).any() and (a | b)[0:4, 0:8].all() and a.sum() == 16


def _seg(path: Path, series_dir: Path, labels: np.ndarray, fractional: bool = False) -> Path:
    """A SEG written by highdicom; labels: (slices, rows, columns) in slice order along the normal."""
    grid = _grid(series_dir)
    by_uid = {}
    for f in series_dir.iterdir():
        ds = pydicom.dcmread(str(f))
        by_uid[str(ds.SOPInstanceUID)] = ds
    sources = [by_uid[uid] for uid, _ in grid.sources]
    code = hd.sr.CodedConcept("85756007", "SCT", "Tissue")
    n = 1 if fractional else int(labels.max())
    desc = [hd.seg.SegmentDescription(i, f"s{i}", code, code, hd.seg.SegmentAlgorithmTypeValues.MANUAL)
            for i in range(1, n + 1)]
    if fractional:
        pixels = labels.astype(np.float32)
        kind = hd.seg.SegmentationTypeValues.FRACTIONAL
    else:
        pixels, kind = labels.astype(np.uint8), hd.seg.SegmentationTypeValues.BINARY
    seg = hd.seg.Segmentation(sources, pixels, kind, desc, hd.UID(), 50, hd.UID(), 1, "test", "test", "1", "1")
    seg.save_as(str(path))
    return path


def test_seg_known_answer_and_round_trip(tmp_path):
    series = _ct(tmp_path / "in" / "ct", names="shuffled-noext")
    labels = np.zeros((NZ, ROWS, COLS), np.uint8)
    labels[1, 2:5, 3:7] = 1
    labels[2, 6:9, 1:4] = 2
    labels[3, 0, 0] = 2
    _seg(tmp_path / "in" / "seg.dcm", series, labels)
    report = convert(tmp_path / "in", tmp_path / "out", ConvertOptions())
    (out,) = report.labelmaps
    assert out.nifti.name.endswith("_seg.nii.gz")
    img = nib.load(str(report.written[0].nifti))
    lab = nib.load(str(out.nifti))
    assert np.allclose(lab.affine, img.affine) and lab.shape == img.shape
    assert np.array_equal(np.asarray(lab.dataobj).transpose(2, 1, 0), labels)
    # Label map -> SEG -> label map: the same voxels, names kept from the JSON.
    grid = _grid(series)
    from MedPrepLib.nifti import read_nifti

    again = export_seg(read_nifti(out.nifti), grid, tmp_path / "again.dcm",
                       sidecar=out.sidecar)
    lm = read_annotation(again, grid)
    assert np.array_equal(lm.label_array(), labels) and [s.name for s in lm.segments] == ["s1", "s2"]
    assert not lm.warnings


def test_seg_fractional_threshold_and_fractions(tmp_path):
    series = _ct(tmp_path / "ct")
    frac = np.zeros((NZ, ROWS, COLS), np.float32)
    frac[1, 2:4, 2:4] = 0.75
    frac[1, 5, 5] = 0.25
    seg = _seg(tmp_path / "seg.dcm", series, frac, fractional=True)
    grid = _grid(series)
    assert read_annotation(seg, grid).masks.sum() == 4
    kept = read_annotation(seg, grid, keep_fractions=True).masks[0]
    assert kept.dtype == np.float32 and abs(float(kept[1, 2, 2]) - 0.75) < 1 / 255 and kept[1, 5, 5] > 0.2


def test_seg_without_its_images_is_reported(tmp_path, capsys):
    series = _ct(tmp_path / "ct")
    labels = np.zeros((NZ, ROWS, COLS), np.uint8)
    labels[0, 1, 1] = 1
    (tmp_path / "only").mkdir()
    _seg(tmp_path / "only" / "seg.dcm", series, labels)
    _ct(tmp_path / "only" / "other")
    assert main(["convert", str(tmp_path / "only"), str(tmp_path / "out"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "SEG not converted: the image series it references is not among the input files" in err
    assert main(["scan", str(tmp_path / "only"), "--quiet"]) == 0
    assert "MISSING (referenced images not found)" in capsys.readouterr().out


def test_export_seg_cli(tmp_path, capsys):
    series = _ct(tmp_path / "ct")
    convert(series, tmp_path / "nii", ConvertOptions())
    img = next((tmp_path / "nii").glob("*.nii.gz"))
    ref = nib.load(str(img))
    labels = np.zeros(ref.shape, np.uint8)
    labels[2:5, 3:6, 1] = 1
    labels[7, 8, 3] = 2
    nib.save(nib.Nifti1Image(labels, ref.affine), str(tmp_path / "label.nii.gz"))
    out = tmp_path / "label.dcm"
    assert main(["export-seg", str(tmp_path / "label.nii.gz"), str(series), str(out),
                 "--names", "liver,tumour"]) == 0
    lm = read_annotation(out, _grid(series))
    assert [s.name for s in lm.segments] == ["liver", "tumour"]
    assert np.array_equal(lm.label_array().transpose(2, 1, 0), labels)
    assert main(["export-seg", str(tmp_path / "label.nii.gz"), str(series), str(out), "--names", "liver"]) == 1
    assert "1 name(s) given for label values up to 2" in capsys.readouterr().err


def test_run_pairs_series_with_its_rtstruct_and_selects_label_names(tmp_path, capsys, monkeypatch):
    import MedPrepLib.convert

    series = _ct(tmp_path / "dicom" / "ct")
    _rtstruct(tmp_path / "dicom" / "rt.dcm", series, [
        (1, "Tumour", [(2, HOLE)]), (2, "Liver", [(1, SQUARE), (2, SQUARE)]), (3, "Skin", [(0, SQUARE)])])
    out = tmp_path / "out"
    reads = []
    original = MedPrepLib.convert.volume_from_series
    monkeypatch.setattr(MedPrepLib.convert, "volume_from_series", lambda *a, **k: reads.append(1) or original(*a, **k))
    assert main(["run", "nnunet-raw", str(tmp_path / "dicom"), str(out), "--workers", "1",
                 "--label-names", "liver,TUMOUR"]) == 0
    assert len(reads) == 1  # the series' pixels are read once, for the image and its RTSTRUCT's grid
    (label,) = (out / "labelsTr").glob("*.nii.gz")
    (image,) = (out / "imagesTr").glob("*.nii.gz")
    lab, img = nib.load(str(label)), nib.load(str(image))
    assert np.allclose(lab.affine, img.affine)
    values, counts = np.unique(np.asarray(lab.dataobj), return_counts=True)
    # Liver: the 35-voxel square on 2 slices, less the 2 voxels the tumour (drawn later, label 2) takes.
    assert values.tolist() == [0, 1, 2] and counts[1:].tolist() == [68, 2]
    bad = tmp_path / "bad"
    assert main(["run", "nnunet-raw", str(tmp_path / "dicom"), str(bad), "--workers", "1",
                 "--label-names", "liver,spleen"]) != 0
    err = capsys.readouterr().err
    assert "spleen" in err and "names found: Tumour, Liver, Skin" in err


@pytest.mark.parametrize("clean", [False, True])
def test_anonymize_keeps_annotations_pointing_at_their_images(tmp_path, clean):
    series = _ct(tmp_path / "in" / "ct")
    labels = np.zeros((NZ, ROWS, COLS), np.uint8)
    labels[1, 2:4, 2:5] = 1
    _seg(tmp_path / "in" / "seg.dcm", series, labels)
    _rtstruct(tmp_path / "in" / "rt.dcm", series, [(1, "Liver", [(2, SQUARE)])])
    key = tmp_path / "key.txt"
    key.write_text("secret")
    args = ["anonymize", str(tmp_path / "in"), str(tmp_path / "anon"), "--key-file", str(key)]
    assert main(args + (["--clean-descriptors"] if clean else [])) == 0
    report = convert(tmp_path / "anon", tmp_path / "out", ConvertOptions())
    assert not report.failed and len(report.written) == 1
    by_kind = {p.nifti.name.rsplit("_", 1)[1]: p for p in report.labelmaps}
    seg = np.asarray(nib.load(str(by_kind["seg.nii.gz"].nifti)).dataobj).transpose(2, 1, 0)
    rt = np.asarray(nib.load(str(by_kind["rtstruct.nii.gz"].nifti)).dataobj).transpose(2, 1, 0)
    assert np.array_equal(seg, labels) and np.array_equal(rt[2], _expected_square(hole=False).astype(np.uint8))
    # ROI Name is "Z" in Table E.1-1 (emptied) and "C" with the Clean Descriptors Option: free text that
    # cannot be proved free of identity is never kept verbatim (issue 10's rule), so it is emptied too.
    names = [s["name"] for s in json.loads(by_kind["rtstruct.nii.gz"].sidecar.read_text())["Segments"]]
    assert names == [""]
    # convert --anonymize names the ROIs as the de-identified copy does.
    args = ["convert", str(tmp_path / "in"), str(tmp_path / "direct"), "--anonymize", "--key-file", str(key), "--quiet"]
    assert main(args + (["--clean-descriptors"] if clean else [])) == 0
    (side,) = (tmp_path / "direct").glob("*_rtstruct.json")
    assert [s["name"] for s in json.loads(side.read_text())["Segments"]] == names


def test_scan_json_lists_annotations_without_phi(tmp_path, capsys):
    series = _ct(tmp_path / "ct")
    _rtstruct(tmp_path / "rt.dcm", series, [(2, "Liver", [(1, SQUARE)]), (1, "Heart", [])])
    assert main(["scan", str(tmp_path), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["annotations"]
    assert row == {"kind": "RTSTRUCT", "series_number": 9, "count": 2, "names": ["Heart", "Liver"],
                   "referenced_series_found": True, "warnings": []}


def test_export_seg_from_a_dcm2niix_label_map(tmp_path):
    """dcm2niix's grid flips the row axis: export-seg undoes it, so the reference label map goes back
    to DICOM SEG on the original images voxel for voxel."""
    root = require_annotations() / "seg_ct_overlap_5seg"
    out = tmp_path / "ref.dcm"
    assert main(["export-seg", str(root / "ref" / "label.nii.gz"), str(root / "images"), str(out)]) == 0
    series = scan(root / "images").series[0]
    vol = volume_from_series(series)
    back = read_annotation(out, vol)
    ref = nib.load(str(root / "ref" / "label.nii.gz"))
    moved = _on_ref(back.label_array().transpose(2, 1, 0), vol.affine, ref.affine)
    assert np.array_equal(moved, np.asarray(ref.dataobj)) and len(back.segments) == 5


def test_rtstruct_roi_with_a_malformed_number_is_reported_and_the_others_kept(tmp_path):
    """An ROI Number (IS) that is text ("+7x01") cannot be referenced: its contours are reported as those
    of an ROI the structure set does not list, the other ROIs are read. Before: internal error (ValueError)."""
    series = _ct(tmp_path / "ct")
    path = _rtstruct(tmp_path / "rt.dcm", series, [("+7001", "Broken", [(1, SQUARE)]), (2, "Liver", [(2, SQUARE)])])
    data = path.read_bytes()
    assert data.count(b"+7001") == 2  # ROI Number, then the contour's Referenced ROI Number
    path.write_bytes(data.replace(b"+7001", b"+7x01", 1))
    labelmap = read_annotation(path, _grid(series))
    assert [s.name for s in labelmap.segments] == ["Liver"]
    assert any("does not list" in w for w in labelmap.warnings), labelmap.warnings
