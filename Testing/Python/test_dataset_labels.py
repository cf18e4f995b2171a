"""Class labels from a table, drawn splits (seeded, stratified, grouped by patient), the classes layout
and labels.csv, on tiny synthetic radiographs (RSNA layout: one `<patientId>.dcm` per image)."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from MedPrepLib.cases import Case, read_label_table
from MedPrepLib.cli.main import main
from MedPrepLib.dataset import PreparedDataset
from MedPrepLib.errors import MedPrepError
from MedPrepLib.splits import assign_splits, parse_split_spec

PIPELINE = {"name": "t", "steps": [{"step": "xray_display", "out_min": 0, "out_max": 255},
                                   {"step": "resample", "size": [16, 16]}, {"step": "dataset_zscore"}],
            "output": {"format": "npy"}}


def write_dx(root: Path, name: str, seed: int, patient_id: str) -> Path:
    from MedPrepSample import write_cxr

    tmp = root / f".tmp-{name}"
    f = write_cxr(tmp, rows=32, cols=32, seed=seed, patient={"PatientID": patient_id, "PatientName": "Doe^Jane"},
                  extra={"AccessionNumber": f"ACC{seed}"})
    target = root / f"{name}.dcm"
    shutil.move(str(f), target)
    shutil.rmtree(tmp)
    return target


@pytest.fixture(scope="module")
def dx(tmp_path_factory) -> Path:
    """Six radiographs of three patients (two each); a table with repeated rows and an id without image."""
    root = tmp_path_factory.mktemp("dx")
    images = root / "images"
    images.mkdir()
    lines = ["patientId,x,y,width,height,Target"]
    for i in range(6):
        write_dx(images, f"img{i}", i, f"PAT{i // 2}")
        lines.append(f"img{i},,,,,{i % 2}")
        if i % 2:  # RSNA repeats an image once per box
            lines.append(f"img{i},1,2,3,4,{i % 2}")
    lines.append("ghost,,,,,1")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    (root / "p.json").write_text(json.dumps(PIPELINE))
    return root


def read_csv(path: Path) -> list:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_table_rows_collapse_when_they_agree_and_a_disagreement_names_the_id(tmp_path):
    (tmp_path / "a.tsv").write_text("id\tlabel\nx\t1\nx\t1\ny\tcat\n\n")
    table = read_label_table(tmp_path / "a.tsv", "id", "label")
    assert table.labels == {"x": "1", "y": "cat"} and not table.maps
    (tmp_path / "b.csv").write_text("id,label\nx,1\ny,0\nx,0\n")
    with pytest.raises(MedPrepError, match=r"id 'x' two labels: '1' \(line 2\) and '0' \(line 4\)"):
        read_label_table(tmp_path / "b.csv", "id", "label")
    with pytest.raises(MedPrepError, match="no column 'Target' .*it has: id, label"):
        read_label_table(tmp_path / "b.csv", "id", "Target")


def test_run_with_a_table_labels_cases_lists_unmatched_and_writes_the_classes_layout(dx, tmp_path, capsys):
    out = tmp_path / "out"
    extra = dx / "images_plus"
    shutil.copytree(dx / "images", extra)
    write_dx(extra, "nolabel", 9, "PAT9")
    rc = main(["run", str(dx / "p.json"), str(extra), str(out), "--workers", "1", "--labels", str(dx / "labels.csv"),
               "--id-column", "patientId", "--label-column", "Target", "--layout", "classes"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "1 cases have no label in the table: nolabel" in printed
    assert "1 labels in the table match no case: ghost" in printed
    rows = {r["case"]: r for r in read_csv(out / "labels.csv")}
    assert set(rows) == {f"img{i}" for i in range(6)} | {"nolabel"}
    for i in range(6):
        assert rows[f"img{i}"] == {"case": f"img{i}", "file": f"train/{i % 2}/img{i}.npy", "label": str(i % 2),
                                   "split": "train"}
        assert np.load(out / rows[f"img{i}"]["file"]).shape == (1, 16, 16)
    assert rows["nolabel"]["file"] == "unlabelled/nolabel.npy" and rows["nolabel"]["label"] == ""
    assert json.loads((out / "sidecars" / "img0.json").read_text())["MedPrepGeometry"]["axes"] == "channel, y, x"
    # what a training loop reads: (memory-mapped array, class index) pairs, PyTorch never imported
    code = ("import sys; from MedPrepLib.dataset import PreparedDataset as D; d = D(sys.argv[1]); "
            "x, y = d[0]; print(len(d), type(x).__name__, x.shape, sorted(d.targets), d.classes, "
            "'torch' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, check=True,
                           env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))).stdout
    assert shown.strip() == "6 memmap (1, 16, 16) [0, 0, 0, 1, 1, 1] ['0', '1'] False"
    data = PreparedDataset(out, split=None, keep_unlabelled=True)
    assert len(data) == 7 and data.targets[data.cases.index("nolabel")] == -1
    train = PreparedDataset(out)
    x, y = train[train.cases.index("img3")]
    assert np.array_equal(x, np.load(out / "train/1/img3.npy")) and y == 1
    with pytest.raises(MedPrepError, match="no case in split 'val'"):
        PreparedDataset(out, split="val")
    # --require-labels: one clear line, exit 1
    rc = main(["run", str(dx / "p.json"), str(extra), str(tmp_path / "o2"), "--workers", "1", "--labels",
               str(dx / "labels.csv"), "--id-column", "patientId", "--label-column", "Target", "--require-labels"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "--require-labels: 1 cases have no label (first: case nolabel)" in err[0]


def test_dicom_field_ids_keep_hashed_names_unless_asked_and_never_print_the_ids(dx, tmp_path, capsys):
    table = tmp_path / "by_patient.csv"
    table.write_text("PatientID,Target\nPAT0,a\nPAT1,b\nPAT2,a\nPAT7,b\n")
    out = tmp_path / "out"
    assert main(["run", str(dx / "p.json"), str(dx / "images"), str(out), "--workers", "1", "--labels", str(table),
                 "--id-column", "PatientID", "--label-column", "Target", "--case-id", "PatientID"]) == 0
    printed = capsys.readouterr().out
    assert "1 labels in the table match no case: line 5" in printed and "PAT7" not in printed
    rows = read_csv(out / "labels.csv")
    assert len(rows) == 6 and all(r["case"].startswith("series-") for r in rows)
    assert sorted(r["label"] for r in rows) == ["a", "a", "a", "a", "b", "b"]
    assert not any("PAT" in p.name for p in out.rglob("*"))
    # asked for: each patient's two images are named after the id, kept apart by their series hash
    out2 = tmp_path / "out2"
    assert main(["run", str(dx / "p.json"), str(dx / "images"), str(out2), "--workers", "1", "--labels", str(table),
                 "--id-column", "PatientID", "--label-column", "Target", "--case-id", "PatientID",
                 "--case-names", "id"]) == 0
    names = sorted(r["case"] for r in read_csv(out2 / "labels.csv"))
    assert [n.split("_")[0] for n in names] == ["PAT0", "PAT0", "PAT1", "PAT1", "PAT2", "PAT2"]
    assert len(set(names)) == 6


def test_a_table_of_label_maps_gives_dicom_cases_their_segmentations(tmp_path):
    from MedPrepLib.cases import read_image
    from MedPrepLib.nifti import write_nifti
    from MedPrepSample import write_ct_series

    root = tmp_path / "dicom"
    for i in range(2):
        write_ct_series(root / f"case{i}", n_slices=6, rows=16, cols=16, spacing=(2, 2, 3), seed=i,
                        series_uid=f"1.2.826.0.1.3680043.8.498.9{i + 1}")
    maps = tmp_path / "maps"
    maps.mkdir()
    lines = ["case,seg"]
    for i in range(2):
        image = read_image(root / f"case{i}")  # the label map is drawn on the image's grid
        lab = np.zeros(image.array.shape, np.uint8)
        lab[1:3, 4:8, 4:8] = 1 + i
        write_nifti(image.with_values(lab, image.affine.copy()), maps / f"case{i}.nii.gz")
        lines.append(f"case{i},maps/case{i}.nii.gz")
    (tmp_path / "segs.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "p.json").write_text(json.dumps({"name": "s", "steps": [{"step": "orient"}],
                                                        "output": {"format": "nnunet"}}))
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "p.json"), str(root), str(out), "--workers", "1", "--labels",
                 str(tmp_path / "segs.csv"), "--id-column", "case", "--label-column", "seg", "--require-labels"]) == 0
    labels = sorted((out / "labelsTr").glob("*.nii.gz"))
    assert [p.name for p in labels] == ["case0.nii.gz", "case1.nii.gz"]
    assert sorted(np.unique(np.asarray(nib.load(str(labels[1])).dataobj))) == [0, 2]
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 2


def cases_for_split(n_patients: int = 40, per_patient: int = 3) -> list:
    cases = []
    for p in range(n_patients):
        for k in range(per_patient):
            c = Case(f"c{p:03d}_{k}", Path(f"c{p:03d}_{k}"))
            c.key, c.target = f"c{p:03d}_{k}", str(p % 4 == 0)  # 1 in 4 positive
            cases.append(c)
    return cases


def test_drawn_splits_are_reproducible_stratified_and_grouped():
    rows = {f"c{p:03d}_{k}": {"patient_group": f"P{p}"} for p in range(40) for k in range(3)}
    spec = parse_split_spec("train=0.7,val=0.15,test=0.15", seed=3, stratify="label", group_by="patient_group")
    a, b = cases_for_split(), cases_for_split()
    assign_splits(a, spec, rows)
    assign_splits(b, spec, rows)
    assert [c.split for c in a] == [c.split for c in b]
    other = cases_for_split()
    assign_splits(other, parse_split_spec("train=0.7,val=0.15,test=0.15", seed=4, stratify="label",
                                          group_by="patient_group"), rows)
    assert [c.split for c in other] != [c.split for c in a]
    by_patient = {}
    for c in a:
        by_patient.setdefault(rows[c.key]["patient_group"], set()).add(c.split)
    assert all(len(s) == 1 for s in by_patient.values())  # no patient in two splits
    for label, n in (("True", 10), ("False", 30)):  # patients of each class, shared 70/15/15
        counts = {s: sum(1 for c in a if c.target == label and c.split == s) // 3 for s in ("train", "val", "test")}
        assert sum(counts.values()) == n
        assert abs(counts["train"] - 0.7 * n) <= 1 and abs(counts["val"] - 0.15 * n) <= 1
    assert all(c.training == (c.split == "train") for c in a)
    with pytest.raises(MedPrepError, match="add up to 1"):
        parse_split_spec("train=0.8,val=0.1")


def test_drawn_split_over_dicom_groups_by_patient_id_and_statistics_use_train_only(dx, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", str(dx / "p.json"), str(dx / "images"), str(out), "--workers", "1", "--labels",
            str(dx / "labels.csv"), "--id-column", "patientId", "--label-column", "Target",
            "--split", "train=0.34,val=0.33,test=0.33", "--split-seed", "1", "--group-by", "patient"]
    assert main(args) == 0
    assert "splits: test 2, train 2, val 2" in capsys.readouterr().out
    doc = json.loads((out / "splits.json").read_text())
    for members in doc["splits"].values():  # img0/img1 are PAT0's, img2/img3 PAT1's, ...
        assert len(members) == 2 and len({int(m[3:]) // 2 for m in members}) == 1
    stats = json.loads((out / "statistics.json").read_text())
    assert sorted(json.dumps(stats).count(c) for c in doc["splits"]["train"]) == [1, 1]
    assert not any(c in json.dumps(stats) for c in doc["splits"]["test"] + doc["splits"]["val"])
    manifest = {r["case"]: r["split"] for r in read_csv(out / "manifest.csv")}
    assert all(manifest[c] == s for s, members in doc["splits"].items() for c in members)
    # the split file of this run, given back, gives the same split
    out2 = tmp_path / "out2"
    assert main(args[:3] + [str(out2)] + args[4:12] + ["--split", str(out / "splits.json")]) == 0
    assert json.loads((out2 / "splits.json").read_text())["splits"] == doc["splits"]


def test_boxes_follow_the_run_into_boxes_csv_coco_and_the_dataset_and_survive_a_rerun(dx, tmp_path, capsys):
    table = tmp_path / "boxes.csv"
    table.write_text("patientId,x,y,width,height\nimg1,1,2,3,4\nimg3,4,4,8,8\nimg3,20,24,16,4\nimg0,,,,\n")
    out = tmp_path / "out"
    args = ["run", "cxr-heart-detection", str(dx / "images"), str(out), "--workers", "1", "--boxes", str(table),
            "--id-column", "patientId", "--set", "resample.size=[64,64]"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "boxes and points: 2 kept, 1 clipped, 0 dropped" in printed
    assert "3 cases are not in the boxes file: " in printed  # img2, img4, img5
    first = (out / "boxes.csv").read_text()
    rows = read_csv(out / "boxes.csv")
    # 32 x 32 pixels resized to 64 x 64: twice the pixel coordinates; the second box of img3 cut at x = 64
    assert sorted((r["case"], r["status"], [float(r[k]) for k in ("x0", "y0", "x1", "y1")]) for r in rows) == [
        ("img1", "kept", [2.0, 4.0, 8.0, 12.0]), ("img3", "clipped", [40.0, 48.0, 64.0, 56.0]),
        ("img3", "kept", [8.0, 8.0, 24.0, 24.0])]
    coco = json.loads((out / "train" / "annotations.json").read_text())
    assert sorted(im["file_name"] for im in coco["images"]) == ["images/img0.npy", "images/img1.npy",
                                                                 "images/img3.npy"]
    assert sorted(a["bbox"] for a in coco["annotations"]) == [[2.0, 4.0, 6.0, 8.0], [8.0, 8.0, 16.0, 16.0],
                                                              [40.0, 48.0, 24.0, 8.0]]
    side = json.loads((out / "sidecars" / "img3.json").read_text())
    assert side["MedPrepIndexMap"]["output_shape_xyz"] == [64, 64, 1] and len(side["MedPrepBoxes"]) == 2
    data = PreparedDataset(out, split="train")
    x, target = data[data.cases.index("img3")]
    assert x.shape == (1, 64, 64) and target["boxes"].tolist() == [[8, 8, 24, 24], [40, 48, 64, 56]]
    assert target["labels"].tolist() == [0, 0] and data.box_classes == ["object"]
    # the QA picture outlines the boxes before and after (first box red, second green)
    qa = tmp_path / "qa"
    assert main(["run", "cxr-heart-detection", str(dx / "images"), str(qa), "--workers", "1", "--boxes", str(table),
                 "--id-column", "patientId", "--qa"]) == 0
    from PIL import Image

    picture = np.asarray(Image.open(qa / "qa" / "img3.png").convert("RGB"))
    half = picture.shape[0] // 2
    for part in (picture[:half], picture[half:]):  # the input row, the output row
        assert (part == [255, 64, 64]).all(-1).sum() > 20 and (part == [64, 200, 64]).all(-1).sum() > 20
    plain = np.asarray(Image.open(qa / "qa" / "img2.png").convert("RGB"))
    assert not (plain == [255, 64, 64]).all(-1).any()
    assert main(args) == 0  # nothing changed: every case unchanged, the boxes read back from the sidecars
    assert "0 written, 6 unchanged" in capsys.readouterr().out
    assert (out / "boxes.csv").read_text() == first


def test_a_case_whose_label_changes_moves_to_its_new_class_folder(dx, tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("patientId,Target\n" + "".join(f"img{i},{i % 2}\n" for i in range(6)))
    out = tmp_path / "out"
    args = ["run", str(dx / "p.json"), str(dx / "images"), str(out), "--workers", "1", "--labels", str(table),
            "--id-column", "patientId", "--label-column", "Target", "--layout", "classes"]
    assert main(args) == 0
    table.write_text(table.read_text().replace("img0,0", "img0,1"))
    assert main(args) == 0
    assert "6 cases: 1 written, 5 unchanged" in capsys.readouterr().out
    assert not (out / "train" / "0" / "img0.npy").exists() and (out / "train" / "1" / "img0.npy").is_file()
    assert {r["case"]: r["label"] for r in read_csv(out / "labels.csv")}["img0"] == "1"
