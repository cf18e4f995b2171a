"""What the trainers read from MedPrep's outputs: nnU-Net's dataset.json (channel names that pick its
normalisation, labels, DatasetNNN_Name), unlabelled cases reported, .npy geometry, dataset statistics.

The real nnU-Net, MONAI and TorchIO read these outputs in Testing/Clients (`make test-clients`).
"""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from MedPrepLib.cli.main import main
from MedPrepLib.errors import MedPrepError
from MedPrepLib.export import DatasetInfo, channel_names, label_table, nnunet_dataset_dir
from MedPrepLib.preprocess import load_pipeline
from test_preprocess_runner import write_case


def test_channel_names_pick_nnunet_normalisation():
    raw, liver = load_pipeline("nnunet-raw"), load_pipeline("ct-liver")
    assert channel_names(raw, 1, ["CT"], DatasetInfo()) == (["CT"], [])
    assert channel_names(liver, 1, ["CT"], DatasetInfo()) == (["noNorm"], [])  # normalised once, by MedPrep
    assert channel_names(raw, 2, [""], DatasetInfo(modalities=("MR",))) == (["MR", "MR"], [])
    assert channel_names(raw, 2, [""], DatasetInfo(modalities=("T1", "FLAIR")))[0] == ["T1", "FLAIR"]
    names, warnings = channel_names(raw, 1, [""], DatasetInfo())
    assert names == ["image"] and "--modality CT" in warnings[0]
    with pytest.raises(MedPrepError, match="names 3 channels but the images have 2"):
        channel_names(raw, 2, [], DatasetInfo(modalities=("A", "B", "C")))
    assert load_pipeline("mr-heart").normalizing_steps() == ["zscore"]  # per-subject z-score
    assert load_pipeline("nnunet-raw").normalizing_steps() == []


def test_label_table_is_consecutive_and_named():
    assert label_table([0, 2], ()) == ({"background": 0, "label_1": 1, "label_2": 2}, [])
    table, warnings = label_table([0, 1, 2, 3], ("liver", "tumour"))
    assert table == {"background": 0, "liver": 1, "tumour": 2, "label_3": 3} and "3" in warnings[0]
    table, warnings = label_table([0, 1], ("liver", "tumour"))
    assert table == {"background": 0, "liver": 1, "tumour": 2} and "tumour" in warnings[0]


def test_dataset_dir_name_checked(tmp_path):
    assert nnunet_dataset_dir(tmp_path, 7, "Liver") == tmp_path / "Dataset007_Liver"
    for dataset_id, name in ((0, "Liver"), (1000, "Liver"), (1, "my liver"), (1, "../x")):
        with pytest.raises(MedPrepError):
            nnunet_dataset_dir(tmp_path, dataset_id, name)


def test_run_nnunet_names_reports_unlabelled_and_refuses_bad_options(tmp_path, capsys):
    inp = tmp_path / "flat"
    for i in range(2):
        write_case(inp, f"c{i}", i, label_name=str(inp / f"c{i}_seg.nii.gz"))
    write_case(inp, "lonely", 5)
    out = tmp_path / "out"
    args = ["run", "nnunet-raw", str(inp), str(out), "--workers", "1"]
    assert main(args + ["--dataset-id", "17", "--dataset-name", "Liver", "--label-names", "liver,tumour",
                        "--modality", "CT"]) == 0
    err = capsys.readouterr().err
    assert "1 training image(s) have no label map and go to imagesTs, not imagesTr: lonely" in err
    ds = json.loads((out / "Dataset017_Liver" / "dataset.json").read_text())
    assert ds["name"] == "Liver" and ds["channel_names"] == {"0": "CT"} and ds["numTraining"] == 2
    assert ds["labels"] == {"background": 0, "liver": 1, "tumour": 2}
    assert not (out / "dataset.json").exists()
    # A rerun that writes nothing keeps what the skipped cases had (label values, modality).
    assert main(args + ["--dataset-id", "17", "--dataset-name", "Liver"]) == 0
    ds = json.loads((out / "Dataset017_Liver" / "dataset.json").read_text())
    assert ds["labels"] == {"background": 0, "label_1": 1, "label_2": 2} and ds["channel_names"] == {"0": "CT"}
    capsys.readouterr()
    for extra, message in ((["--dataset-id", "3"], "--dataset-id and --dataset-name go together"),
                           (["--label-names", "liver,,tumour"], "--label-names has an empty entry"),
                           (["--labels", str(tmp_path)], "no label map in --labels matches an image")):
        assert main(args + extra) == 1
        assert message in capsys.readouterr().err
    assert main(["run", "ct-liver", str(inp), str(tmp_path / "o2"), "--modality", "CT"]) == 1
    assert "--modality is for the nnU-Net layout" in capsys.readouterr().err


def test_npy_sidecar_affine_follows_the_array_axes(tmp_path):
    write_case(tmp_path / "in", "img", 0)
    src = tmp_path / "in" / "img.nii.gz"
    assert main(["preprocess", str(src), str(tmp_path / "a.npy"), "--preset", "nnunet-raw",
                 "--set", "output.dtype=int16"]) == 0
    geometry = json.loads((tmp_path / "a.json").read_text())["MedPrepGeometry"]
    array, nii = np.load(tmp_path / "a.npy")[0], nib.load(str(src))
    assert geometry["orientation_xyz"] == "RAS"
    # Voxel (z, y, x) of the array is at array_affine_ras @ (z, y, x, 1): the same point as in the input.
    data = np.asarray(nii.dataobj)
    inverse = np.linalg.inv(nii.affine)
    array_affine = np.array(geometry["array_affine_ras"])
    for zyx in [(0, 0, 0), (3, 5, 7), (11, 23, 19)]:
        ijk = np.rint(inverse @ array_affine @ np.array([*zyx, 1.0]))[:3].astype(int)
        assert array[zyx] == data[tuple(ijk)]


def test_stats_then_preprocess_one_image(tmp_path, capsys):
    inp = tmp_path / "flat"
    for i in range(3):
        write_case(inp, f"c{i}", i, loc=100.0 * i)
    image, stats = str(inp / "c0.nii.gz"), tmp_path / "stats.json"
    sets = ["--set", "resample.spacing=[2,2,3]"]
    assert main(["preprocess", image, str(tmp_path / "x.nii.gz"), "--preset", "ct-liver", *sets]) == 1
    err = capsys.readouterr().err
    assert "step 5 'dataset_zscore' needs dataset statistics (mean, std)" in err and "medprep stats ct-liver" in err
    assert main(["stats", "ct-liver", str(inp), str(stats), "--workers", "1", *sets]) == 0
    assert main(["run", "ct-liver", str(inp), str(tmp_path / "run"), "--workers", "1", *sets]) == 0
    ran = json.loads((tmp_path / "run" / "statistics.json").read_text())["steps"]
    assert json.loads(stats.read_text())["steps"] == ran
    assert main(["preprocess", image, str(tmp_path / "x.nii.gz"), "--preset", "ct-liver", *sets,
                 "--statistics", str(stats)]) == 0
    np.testing.assert_allclose(nib.load(str(tmp_path / "x.nii.gz")).get_fdata(),
                               nib.load(str(tmp_path / "run" / "images" / "c0.nii.gz")).get_fdata(), atol=1e-5)
    assert main(["stats", "ct-liver", str(inp), str(stats), *sets]) == 1
    assert main(["stats", "nnunet-raw", str(inp), str(tmp_path / "s2.json")]) == 1
    assert "no step that needs dataset statistics" in capsys.readouterr().err


# ---------------------------------------------------------------- colour (RGB) series

RGB_SPACING, RGB_ORIGIN_LPS = (0.8, 0.6, 2.0), (-10.0, 5.0, 3.0)


def write_rgb_tree(root, n=2):
    """`n` colour Secondary Capture series (z, y, x, 3), PlanarConfiguration 0 and 1 in turn."""
    from MedPrepSample import write_rgb_series

    volumes = []
    for i in range(n):
        rgb = np.random.default_rng(10 + i).integers(0, 256, size=(3, 5, 7, 3)).astype(np.uint8)
        write_rgb_series(root / f"s{i}", rgb, planar=i % 2, spacing=RGB_SPACING, origin_lps=RGB_ORIGIN_LPS,
                         series_number=i + 1)
        volumes.append(rgb)
    return volumes


def dicom_affine_ras():
    (sx, sy, sz), (ox, oy, oz) = RGB_SPACING, RGB_ORIGIN_LPS
    return np.array([[-sx, 0, 0, -ox], [0, -sy, 0, -oy], [0, 0, sz, oz], [0, 0, 0, 1.0]])


def expected_at(rgb, channel, affine):
    """(x, y, z) array of the DICOM voxels of one channel, placed on the grid of `affine`."""
    to_dicom = np.linalg.inv(dicom_affine_ras()) @ affine
    shape = (rgb.shape[2], rgb.shape[1], rgb.shape[0])
    out = np.zeros(shape, np.uint8)
    for ijk in np.ndindex(*shape):
        i, j, k = np.rint(to_dicom @ [*ijk, 1.0])[:3].astype(int)
        out[ijk] = rgb[k, j, i, channel]
    return out


def test_run_nnunet_raw_writes_colour_as_r_g_b_channel_files(tmp_path, capsys):
    volumes = write_rgb_tree(tmp_path / "in")
    out = tmp_path / "out"
    args = ["run", "nnunet-raw", str(tmp_path / "in"), str(out), "--workers", "1"]
    assert main(args) == 0
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    cases = sorted(p.name[:-12] for p in (out / "imagesTs").glob("*_0000.nii.gz"))
    assert len(cases) == 2 and len(list((out / "imagesTs").iterdir())) == 6
    found = []
    for case in cases:
        images = [nib.load(str(out / "imagesTs" / f"{case}_{c:04d}.nii.gz")) for c in range(3)]
        affine = images[0].affine
        assert "".join(nib.aff2axcodes(affine)) == "RAS"
        for img in images:
            assert img.get_data_dtype() == np.uint8 and img.shape == (7, 5, 3)
            np.testing.assert_allclose(img.affine, affine, atol=1e-5)
        data = [np.asarray(img.dataobj) for img in images]
        found.append(next(i for i, rgb in enumerate(volumes)
                          if all(np.array_equal(data[c], expected_at(rgb, c, affine)) for c in range(3))))
    assert sorted(found) == [0, 1]
    # A rerun that skips every case keeps the channel names.
    assert main(args) == 0
    assert json.loads((out / "dataset.json").read_text())["channel_names"] == {"0": "R", "1": "G", "2": "B"}


def test_run_nnunet_refuses_colour_and_grey_in_one_dataset(tmp_path, capsys):
    from MedPrepSample import write_ct_series

    write_rgb_tree(tmp_path / "in", n=1)
    write_ct_series(tmp_path / "in" / "ct", n_slices=3, rows=6, cols=8)
    capsys.readouterr()
    assert main(["run", "nnunet-raw", str(tmp_path / "in"), str(tmp_path / "out"), "--workers", "1"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "is a colour (RGB) image but case 'series-" in err[0], err
    # Refused before any case is written: no channel files without a dataset.json.
    assert not [p for p in (tmp_path / "out").rglob("*.nii.gz")]
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_run_nnunet_refuses_colour_and_grey_nifti_before_writing_any_case(tmp_path, capsys):
    from MedPrepLib.volume import RGB24

    images = tmp_path / "in"
    images.mkdir()
    rgb = np.zeros((4, 5, 2), RGB24)
    rgb["G"] = 200
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(images / "photo.nii.gz"))
    nib.save(nib.Nifti1Image(np.ones((4, 5, 2), np.int16), np.eye(4)), str(images / "scan.nii.gz"))
    capsys.readouterr()
    assert main(["run", "nnunet-raw", str(images), str(tmp_path / "out"), "--workers", "1"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "case 'photo' is a colour (RGB) image but case 'scan' is grey-value" in err[0], err
    assert not [p for p in (tmp_path / "out").rglob("*.nii.gz")]


def test_colour_to_nifti_and_numpy_outputs(tmp_path, capsys):
    from MedPrepLib.volume import RGB24

    rgb = write_rgb_tree(tmp_path / "in", n=1)[0]
    src = str(tmp_path / "in" / "s0")
    assert main(["preprocess", src, str(tmp_path / "a.nii.gz"), "--preset", "nnunet-raw"]) == 0
    img = nib.load(str(tmp_path / "a.nii.gz"))
    assert img.get_data_dtype() == RGB24
    stored = np.asarray(img.dataobj)
    for c, name in enumerate("RGB"):
        assert np.array_equal(stored[name], expected_at(rgb, c, img.affine))
    assert main(["preprocess", src, str(tmp_path / "n.npy"), "--preset", "nnunet-raw"]) == 0
    array = np.load(tmp_path / "n.npy")  # channels first: R, G, B as (3, z, y, x) uint8
    assert array.dtype == np.uint8 and array.shape == (3, 3, 5, 7)
    assert np.array_equal(array[1], stored["G"].T)
    capsys.readouterr()
    assert main(["preprocess", src, str(tmp_path / "b.nii.gz"), "--preset", "nnunet-raw",
                 "--set", "output.dtype=float32"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "a colour (RGB) image cannot be written as float32" in err


def test_qa_picture_shows_colour_as_it_is(tmp_path):
    from PIL import Image

    from MedPrepLib.qa import write_qa_png
    from MedPrepLib.volume import RGB24, Volume

    array = np.zeros((4, 6, 8), RGB24)
    array[...] = (230, 20, 40)
    vol = Volume(array=array, affine=np.diag([0.8, 0.6, 2.0, 1.0]))
    with Image.open(write_qa_png(vol, vol, None, tmp_path / "qa.png", title="c")) as im:
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert (np.abs(pixels.astype(int) - [230, 20, 40]).max(axis=1) <= 1).sum() > 1000
