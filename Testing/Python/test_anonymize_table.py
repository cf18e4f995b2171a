"""The Table E.1-1 data module: equal to its pinned sources, complete against the reference table."""
from __future__ import annotations

import json

import pytest

from conftest import require_reference
from MedPrepLib.anonymize import table_e1_1, tablegen
from MedPrepLib.anonymize.options import AnonymizeOptions
from MedPrepLib.anonymize.profile import RESOLVE, compile_profile


def reference() -> dict:
    return json.loads((require_reference() / "ps315_table_e1_1.json").read_text())


def _tag(text: str) -> int:
    return int(text.lower().replace("x", "0"), 16)


def test_basic_column_equals_the_pinned_dicom_anonymizer():
    pytest.importorskip("dicomanonymizer", reason="dicom-anonymizer==2.1.0 comes with the test extra")
    basic = tablegen.basic_from_dicom_anonymizer()
    assert basic.tags == table_e1_1.BASIC
    assert basic.masked == table_e1_1.BASIC_MASKED


def test_option_columns_equal_the_reference_table():
    # The reference is idiscore's table as data; the option columns were generated from idiscore.
    for column, rows in reference()["options"].items():
        expected = {_tag(t): a for t, a in rows.items() if t != "PRIVATE" and "X" not in t}
        assert table_e1_1.OPTIONS[column] == expected, column
        if "PRIVATE" in rows:
            assert table_e1_1.OPTIONS_PRIVATE[column] == rows["PRIVATE"]


def test_every_reference_row_has_the_same_action_in_the_product():
    profile = compile_profile(AnonymizeOptions())
    for row in reference()["basic_profile"]:
        if row["tag"] == "PRIVATE":
            assert profile.private == table_e1_1.BASIC_PRIVATE == "X"
            continue
        text = row["tag"].lower()
        if "x" in text:  # a repeating row (curves, overlays), checked at one of its tags
            tag = _tag(text[:4] + ("3000" if "x" in text[4:] else text[4:]))
            assert profile.action(tag) == "X", row["keyword"]
        else:
            tag = _tag(text)
            assert table_e1_1.BASIC[tag] == row["action"], row["keyword"]
            assert profile.action(tag) in set(RESOLVE.values()) | {"P"}, row["keyword"]


def test_every_option_changes_what_its_column_lists():
    base = compile_profile(AnonymizeOptions())
    for attr, column in (("retain_patient_characteristics", "retain_patient_characteristics"),
                         ("retain_device_identity", "retain_device_id"), ("keep_uids", "retain_uid"),
                         ("retain_institution_identity", "retain_institution_id"),
                         ("keep_dates", "retain_full_dates"), ("shift_dates", "retain_modified_dates"),
                         ("clean_descriptors", "clean_descriptors")):
        profile = compile_profile(AnonymizeOptions(**{attr: True}))
        for tag, action in table_e1_1.OPTIONS[column].items():
            if tag in (0x00100010, 0x00100020):
                continue
            assert profile.actions[tag] == action, (column, f"{tag:08X}")
        assert profile.private == base.private == "X"
    assert compile_profile(AnonymizeOptions(keep_private=True)).private == "C"


def test_generator_reads_idiscore_rule_sets_as_written():
    source = '''
basic_profile = RawNemaRuleSet(
    name="Basic Application Level Confidentiality Profile",
    code="113100",
    rules=[
        (SingleTag("00080050"), ActionCodes.EMPTY),  # AccessionNumber
        (
            SingleTag("0008002a"),
            ActionCodes.REMOVE_OR_EMPTY_OR_DUMMY,
        ),  # AcquisitionDateTime
        (RepeatingGroup("60xx4000"), ActionCodes.REMOVE),  # OverlayComments
        (PrivateTags(), ActionCodes.REMOVE),  # Private Attributes
    ],
)
retain_safe_private = RawNemaRuleSet(name="x", code="113111", rules=[(PrivateTags(), ActionCodes.CLEAN)])
'''
    columns = tablegen.columns_from_idiscore(source)
    basic = columns["basic_profile"]
    assert basic.tags == {0x00080050: "Z", 0x0008002A: "X/Z/D"}
    assert basic.masked == [(0x60004000, 0xFF00FFFF, "X")] and basic.private == "X"
    assert columns["retain_safe_private"].private == "C"
    text = tablegen.render(basic, columns)
    namespace: dict = {}
    exec(compile(text, "table_e1_1", "exec"), namespace)
    assert namespace["BASIC"] == basic.tags and namespace["BASIC_MASKED"] == basic.masked
    assert namespace["OPTIONS_PRIVATE"] == {"retain_safe_private": "C"}
