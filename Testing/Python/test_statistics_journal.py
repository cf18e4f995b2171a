"""The statistics pass's journal: summaries come back exactly as they were computed, stale or cut-short
lines are ignored. (A driver killed mid-pass and run again: test_dataset_runs.)"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from MedPrepLib.cases import Case
from MedPrepLib.preprocess import dataset_zscore, histogram_standardization, nnunet_normalization
from MedPrepLib.statistics_journal import SummaryJournal
from MedPrepLib.volume import Volume


def summaries() -> list:
    """What the three dataset-statistics steps return for one case, and values a step may return."""
    rng = np.random.default_rng(3)
    image = Volume(rng.normal(100.3, 40.7, (6, 7, 8)).astype(np.float32), np.diag([0.7, 0.7, 1.3, 1.0]))
    label = Volume((rng.random((6, 7, 8)) > 0.5).astype(np.uint8), image.affine)
    return [dataset_zscore.fit(image, label, dataset_zscore.DatasetZScoreParams()),
            nnunet_normalization.fit(image, label, nnunet_normalization.NnunetCtParams(samples_per_case=100)),
            histogram_standardization.fit(image, label, histogram_standardization.HistogramParams()),
            {"n": np.int64(7), "x": np.float32(0.1), "zero": -0.0, "nan": float("nan"), "list": [1, (2.5, None)]}]


def same(a, b) -> bool:
    if isinstance(a, (np.ndarray, np.generic)):
        return type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, float):
        return type(b) is float and (math.isnan(a) and math.isnan(b) or math.copysign(1, a) == math.copysign(1, b)
                                     and a == b)
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def cases(tmp_path: Path) -> list:
    found = []
    for i in range(4):
        image = tmp_path / f"c{i}.nii.gz"
        image.write_bytes(b"x" * (i + 1))
        found.append(Case(f"c{i}", image))
    return found


def test_summaries_come_back_bit_for_bit_and_only_for_the_same_inputs_pipeline_and_statistics(tmp_path):
    path, journaled = tmp_path / "j.jsonl", summaries()
    found = cases(tmp_path)
    stamps = {c.case_id: c.input_stamp() for c in found}
    earlier = {2: {"mean": 1.5, "std": 0.25}}
    with SummaryJournal(path, "digest", stamps) as journal:
        for case, summary in zip(found, journaled):
            journal.append(case, 3, earlier, summary)
    with SummaryJournal(path, "digest", stamps) as journal:
        for case, summary in zip(found, journaled):
            assert journal.found(case, 2, earlier) == []  # another step
            assert journal.found(case, 3, {2: {"mean": 1.5, "std": 0.5}}) == []  # other earlier statistics
            (back,) = journal.found(case, 3, earlier)
            assert same(summary, back), (summary, back)
        assert journal.reused == len(found)
    with SummaryJournal(path, "other pipeline", stamps) as journal:
        assert all(journal.found(c, 3, earlier) == [] for c in found)
    changed = dict(stamps, c1=[(str(found[1].image), 2, 0)])  # the input's size or time changed
    with SummaryJournal(path, "digest", changed) as journal:
        assert journal.found(found[1], 3, earlier) == [] and journal.found(found[0], 3, earlier) != []
    found[2].label_names = ["liver"]  # other labels kept: another foreground
    with SummaryJournal(path, "digest", stamps) as journal:
        assert journal.found(found[2], 3, earlier) == []


def test_a_line_cut_short_is_ignored_and_the_next_one_starts_a_line_of_its_own(tmp_path):
    path, found = tmp_path / "j.jsonl", cases(tmp_path)
    stamps = {c.case_id: c.input_stamp() for c in found}
    with SummaryJournal(path, "d", stamps) as journal:
        journal.append(found[0], 0, {}, (10, 1.5, 2.25))
        journal.append(found[1], 0, {}, (20, 2.5, 3.25))
    whole = path.read_bytes()
    path.write_bytes(whole[:-9])  # the second line cut short, as a crash mid-write leaves it
    with SummaryJournal(path, "d", stamps) as journal:
        assert journal.found(found[0], 0, {}) == [(10, 1.5, 2.25)]
        assert journal.found(found[1], 0, {}) == []
        journal.append(found[1], 0, {}, (20, 2.5, 3.25))
    with SummaryJournal(path, "d", stamps) as journal:
        assert journal.found(found[1], 0, {}) == [(20, 2.5, 3.25)]
    journal.remove()
    assert not path.exists()
