"""The synthetic DICOM writer and phantoms: geometry and values as read back by pydicom and ITK."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

import MedPrepSample as sample
from conftest import rotation
from MedPrepLib.cli.main import main
from MedPrepLib.errors import MedPrepError


def _ramp(shape, lo=-1000, hi=2000):
    return np.linspace(lo, hi, int(np.prod(shape))).reshape(shape).round().astype(np.int16)


def _read_itk(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


@pytest.mark.parametrize("oblique", [False, True], ids=["axial", "oblique"])
def test_geometry_and_values_read_back(tmp_path, oblique):
    vol = _ramp((5, 64, 48))
    spacing = (0.8, 0.6, 2.5)
    origin = (-10.0, 20.0, 30.0)
    rot = rotation(0.3, -0.2, 0.5) if oblique else np.eye(3)
    row, col = rot[:, 0], rot[:, 1]
    paths = sample.write_series(tmp_path, vol, spacing=spacing, origin_lps=origin, row_dir=row,
                                col_dir=col, intercept=-1024.0)
    assert [p.name for p in paths] == [f"IM{k:05d}.dcm" for k in range(1, 6)]

    normal = np.cross(row, col)
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        assert [float(v) for v in ds.PixelSpacing] == [0.6, 0.8]  # DICOM order: row, column spacing
        assert float(ds.SliceThickness) == 2.5
        assert ds.InstanceNumber == k + 1
        np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient],
                                   np.concatenate([row, col]), atol=1e-9)
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient],
                                   np.array(origin) + k * 2.5 * normal, atol=1e-5)
        assert ds.Rows == 64 and ds.Columns == 48
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(hu, vol[k])

    img = _read_itk(tmp_path)
    np.testing.assert_allclose(img.GetOrigin(), origin, atol=1e-5)
    np.testing.assert_allclose(img.GetSpacing(), spacing, atol=1e-5)
    np.testing.assert_allclose(np.reshape(img.GetDirection(), (3, 3)),
                               np.column_stack([row, col, normal]), atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), vol)


def test_stored_type_bits_and_scaling(tmp_path):
    # Non-negative stored values within 12 bits: uint16, BitsStored 12.
    ds = pydicom.dcmread(sample.write_series(tmp_path / "u12", _ramp((1, 8, 8), 0, 4000))[0])
    assert (ds.PixelRepresentation, ds.BitsStored, ds.HighBit) == (0, 12, 11)
    # Negative stored values beyond 12 bits: int16, BitsStored 16.
    ds = pydicom.dcmread(sample.write_series(tmp_path / "s16", _ramp((1, 8, 8), -3000, 3000))[0])
    assert (ds.PixelRepresentation, ds.BitsStored) == (1, 16)
    assert ds.pixel_array.dtype == np.int16
    # A float volume with slope 0.25 is quantised to quarter steps, written on MR as well.
    vol = np.linspace(0.0, 100.0, 64).reshape(1, 8, 8)
    ds = pydicom.dcmread(sample.write_series(tmp_path / "mr", vol, modality="MR", slope=0.25,
                                             intercept=-5.0)[0])
    assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    real = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(real, vol[0], atol=0.125 + 1e-9)
    with pytest.raises(ValueError, match="int16"):
        sample.write_series(tmp_path / "bad", np.array([[[-40000.0, 0.0]]]))


@pytest.mark.parametrize("ts", [RLELossless, JPEG2000Lossless, JPEGLSLossless])
def test_compressed_transfer_syntaxes_are_lossless(tmp_path, ts):
    if not sample.can_encode(ts):
        with pytest.raises(MedPrepError, match="cannot encode"):
            sample.write_series(tmp_path, _ramp((1, 16, 16)), transfer_syntax=ts)
        pytest.skip(f"no encoder installed for {ts.name}")
    vol = _ramp((3, 32, 32), -1024, 3000)
    paths = sample.write_series(tmp_path, vol, transfer_syntax=ts, intercept=-1024.0)
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == ts
        np.testing.assert_array_equal(ds.pixel_array.astype(int) - 1024, vol[k])


def test_file_name_schemes_and_itk_order(tmp_path):
    vol = _ramp((6, 16, 16))
    shuffled = sample.write_series(tmp_path / "shuf", vol, file_names="shuffled-noext")
    names = [p.name for p in shuffled]
    assert all("." not in n for n in names)
    assert names != sorted(names)
    # Order comes from the positions, not from the names.
    np.testing.assert_array_equal(sitk.GetArrayFromImage(_read_itk(tmp_path / "shuf")), vol)
    by_uid = sample.write_series(tmp_path / "uid", vol, file_names="uid")
    assert [p.stem for p in by_uid] == [pydicom.dcmread(p).SOPInstanceUID for p in by_uid]
    with pytest.raises(ValueError, match="file_names"):
        sample.write_series(tmp_path / "x", vol, file_names="random")


def test_identity_uids_extra_and_time_series(tmp_path):
    ds = pydicom.dcmread(sample.write_series(tmp_path / "a", _ramp((1, 8, 8)))[0])
    assert str(ds.PatientName) == "DEMO^PATIENT" and ds.PatientID == "MEDPREP-DEMO-0001"

    vol = _ramp((2, 3, 8, 8))
    paths = sample.write_series(
        tmp_path / "b", vol, modality="MR", patient={"PatientName": "Müller^Jörg", "PatientID": "12345"},
        study_uid="1.2.3.4", series_uid="1.2.3.4.5", frame_of_reference_uid="1.2.3.4.6",
        series_number=7, extra={"InstitutionName": "General Hospital", "SliceThickness": None})
    assert len(paths) == 6
    for i, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        assert str(ds.PatientName) == "Müller^Jörg" and ds.PatientID == "12345"
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID) == \
            ("1.2.3.4", "1.2.3.4.5", "1.2.3.4.6")
        assert ds.SeriesNumber == 7 and ds.InstitutionName == "General Hospital"
        assert "SliceThickness" not in ds
        t, k = divmod(i, 3)
        assert ds.TemporalPositionIdentifier == t + 1 and ds.NumberOfTemporalPositions == 2
        assert float(ds.ImagePositionPatient[2]) == pytest.approx(k * 1.0)
        np.testing.assert_array_equal(ds.pixel_array, vol[t, k])
    assert len({pydicom.dcmread(p).SOPInstanceUID for p in paths}) == 6


def test_invalid_arguments(tmp_path):
    vol = _ramp((1, 8, 8))
    with pytest.raises(ValueError, match="modality"):
        sample.write_series(tmp_path, vol, modality="XX")
    with pytest.raises(ValueError, match="orthogonal"):
        sample.write_series(tmp_path, vol, row_dir=(1, 0, 0), col_dir=(1, 1, 0))
    with pytest.raises(ValueError, match="shape"):
        sample.write_series(tmp_path, vol[0])
    with pytest.raises(ValueError, match="PatientNmae"):
        sample.write_series(tmp_path, vol, patient={"PatientNmae": "X"})
    assert not list(tmp_path.iterdir())


def test_ct_series_headers_and_hu(tmp_path):
    paths = sample.write_ct_series(tmp_path, n_slices=4, rows=64, cols=64, spacing=(5.0, 5.0, 10.0))
    ds = pydicom.dcmread(paths[0])
    assert ds.Modality == "CT" and float(ds.RescaleIntercept) == -1024 and float(ds.RescaleSlope) == 1
    assert ds.PixelRepresentation == 0 and ds.BitsStored == 12
    img = _read_itk(tmp_path)
    expected = sample.ct_phantom(4, 64, 64, (5.0, 5.0, 10.0))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), expected)
    # The field of view is centred on the isocentre in x and y.
    centre = img.TransformContinuousIndexToPhysicalPoint((31.5, 31.5, 0.0))
    np.testing.assert_allclose(centre[:2], (0.0, 0.0), atol=1e-6)


def test_ct_phantom_anatomy_and_determinism():
    vol = sample.ct_phantom(40, 128, 128, spacing=(2.8, 2.8, 8.0), seed=3)
    assert vol.dtype == np.int16 and vol.shape == (40, 128, 128)
    np.testing.assert_array_equal(vol, sample.ct_phantom(40, 128, 128, (2.8, 2.8, 8.0), seed=3))
    assert not np.array_equal(vol, sample.ct_phantom(40, 128, 128, (2.8, 2.8, 8.0), seed=4))
    assert vol.min() >= -1024
    assert np.median(vol[:, :4, :4]) < -950  # air in the corners
    centre = vol[:, 40:88, 40:88]
    inside_body = vol[:, 50:78, 30:98]
    air_fraction = (inside_body < -700).mean(axis=(1, 2))
    assert air_fraction[-5:].min() > 0.5 and air_fraction[:20].max() < 0.1  # lungs only in the upper part
    assert (vol > 600).any()  # bone
    assert 20 < np.median(centre[15]) < 80  # liver/soft tissue in the middle of the abdomen


def test_cxr_headers_and_pixels(tmp_path):
    path = sample.write_cxr(tmp_path / "m1", rows=256, cols=200)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"
    assert ds.Modality == "DX" and ds.PhotometricInterpretation == "MONOCHROME1"
    assert [float(v) for v in ds.ImagerPixelSpacing] == [0.139, 0.139]
    assert "PixelSpacing" not in ds and "ImagePositionPatient" not in ds
    assert (ds.BitsStored, ds.PixelRepresentation) == (12, 0)
    assert ds.PresentationIntentType == "FOR PRESENTATION" and ds.ViewPosition == "PA"
    assert ds.BodyPartExamined == "CHEST" and ds.PresentationLUTShape == "INVERSE"
    assert "WindowCenter" in ds and "WindowWidth" in ds
    phantom = sample.cxr_phantom(256, 200)
    np.testing.assert_array_equal(ds.pixel_array, 4095 - phantom.astype(int))

    ds2 = pydicom.dcmread(sample.write_cxr(tmp_path / "m2", rows=256, cols=200, photometric="MONOCHROME2"))
    assert ds2.PhotometricInterpretation == "MONOCHROME2"
    np.testing.assert_array_equal(ds2.pixel_array, phantom)


def test_cxr_phantom_content_and_determinism():
    img = sample.cxr_phantom(512, 512, seed=1)
    assert img.dtype == np.uint16 and img.max() <= 4095
    np.testing.assert_array_equal(img, sample.cxr_phantom(512, 512, seed=1))
    lung = np.median(img[200:260, 100:150])  # right lung field, image left
    mediastinum = np.median(img[200:260, 236:276])
    outside = np.median(img[400:500, :10])
    assert outside < lung < mediastinum
    # The pneumonia makes the right lower zone brighter than the mirrored left one.
    assert np.median(img[280:300, 145:160]) > np.median(img[280:300, 352:367]) + 100


def test_demo_writes_converts_and_reruns(tmp_path, capsys):
    import nibabel as nib

    out = tmp_path / "demo"
    assert main(["demo", str(out), "--slices", "3"]) == 0
    first = capsys.readouterr().out
    assert "wrote" in first and first.count(".nii.gz:") == 2
    assert len(list((out / "dicom" / "ct").iterdir())) == 3
    assert len(list((out / "dicom" / "cxr").iterdir())) == 1

    ct = [p for p in (out / "nifti").glob("*.nii.gz") if "CT" in p.name]
    assert len(ct) == 1
    img = nib.as_closest_canonical(nib.load(str(ct[0])))
    expected = sample.ct_phantom(3)
    # The phantom in RAS voxel order: LPS storage, so x and y are flipped; (z, y, x) -> (x, y, z).
    np.testing.assert_array_equal(np.asarray(img.dataobj), expected[:, ::-1, ::-1].T)
    np.testing.assert_allclose(img.header.get_zooms(), (0.7, 0.7, 1.0), atol=1e-5)

    # A second run reuses the DICOM and rewrites the NIfTI.
    assert main(["demo", str(out), "--slices", "3"]) == 0
    assert capsys.readouterr().out.count("reusing") == 3
    # the labelled radiographs: classes layout with a patient-grouped split, heart boxes in 224 x 224 pixels
    classes = sorted(str(p.relative_to(out / "cxr-pneumonia")) for p in (out / "cxr-pneumonia").rglob("*.npy"))
    assert len(classes) == 8 and all(p.split("/")[0] in ("train", "val", "test") and p.split("/")[1] in "01"
                                     for p in classes)
    heart = (out / "cxr-heart-detection" / "boxes.csv").read_text().splitlines()
    assert len(heart) == 9 and all(",heart,box,kept,91.8,118.7,0.0,159.0,156.8,1.0," in line for line in heart[1:])
    assert (out / "cxr-heart-detection" / "train" / "annotations.json").is_file()
    pneumonia = (out / "tables" / "labels.csv").read_text()
    assert pneumonia.count("cxr-001,") == 2 and pneumonia.count(",1\n") == 5
    # A different slice count needs --overwrite, which replaces the series completely.
    assert main(["demo", str(out), "--slices", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("medprep: error: ") and "--overwrite" in err and len(err.splitlines()) == 1
    assert main(["demo", str(out), "--slices", "2", "--overwrite"]) == 0
    assert len(list((out / "dicom" / "ct").iterdir())) == 2
    assert sorted(p.name for p in (out / "dicom").iterdir()) == ["ct", "cxr"]


def test_demo_into_a_file_is_one_error_line(tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    assert main(["demo", str(blocker), "--slices", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("medprep: error: cannot write the sample DICOM") and len(err.splitlines()) == 1
    assert blocker.read_text() == "x"


def test_the_runtime_package_does_not_import_the_sample_writer():
    """MedPrepLib (what Slicer loads) imports no test data: every module of it, MedPrepSample left out."""
    import pkgutil
    import subprocess
    import sys

    import MedPrepLib

    modules = [m.name for m in pkgutil.walk_packages(MedPrepLib.__path__, "MedPrepLib.")]
    assert "MedPrepLib.cli.demo_cmd" in modules and not any(m.endswith(".sample") for m in modules)
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except ImportError:\n"
            "        pass  # an optional dependency (dask, nilearn...) this environment lacks\n"
            "print('MedPrepSample' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_demo_without_the_sample_package_is_one_error_line(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "MedPrepSample", None)  # import fails as if it were not installed
    assert main(["demo", str(tmp_path / "demo"), "--slices", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("medprep: error: the demo needs the MedPrepSample package") and len(err.splitlines()) == 1
    assert not (tmp_path / "demo").exists()
