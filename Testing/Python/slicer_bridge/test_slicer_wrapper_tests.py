"""Slicer's own tests of `parameterNodeWrapper` (../shared/slicer-python/tests), run unchanged in the harness.

They are what makes the harness trustworthy: the same serializers, validators and GUI connectors,
driven the way Slicer's developers drive them, on widgets from the harness. A test that needs a
widget the harness does not provide is skipped by name below (and counted in the README).
"""
from __future__ import annotations

import importlib.util
import sys
import unittest

import pytest

import slicer_harness

REASON = slicer_harness.unavailable()
if REASON:
    pytest.skip(REASON, allow_module_level=True)

slicer_harness.install()
from slicer_harness.standins import ABSENT  # noqa: E402

TESTS = slicer_harness.SLICER_PYTHON / "tests"
# Test -> the widget it needs that the harness does not have (standins.ABSENT).
NEEDS_ABSENT_WIDGET = {
    "test_CtkCheckBoxToBool": "ctkCheckBox",
    "test_CtkComboBoxToStringable": "ctkComboBox",
    "test_CtkComboBoxToEnum": "ctkComboBox",
    "test_ctkColorPickerButtonToQColor": "ctkColorPickerButton",
    "test_ctkDoubleSliderToFloat": "ctkDoubleSlider",
    "test_ctkDoubleSpinBoxToFloat": "ctkDoubleSpinBox",
    "test_CtkRangeWidgetToRange": "ctkRangeWidget",
    "test_CtkRangeWidgetToNegativeRange": "ctkRangeWidget",
    "test_CtkDoubleRangeSliderToRange": "ctkDoubleRangeSlider",
    "test_qMRMLSliderWidgetToFloat": "qMRMLSliderWidget",
    "test_qMRMLSpinBoxToFloat": "qMRMLSpinBox",
    "test_qMRMLRangeSliderToRange": "qMRMLRangeWidget",
    "test_qMRMLSubjectHierarchyTreeViewToNode": "qMRMLSubjectHierarchyTreeView",
    "test_qMRMLSubjectHierarchyComboBox": "qMRMLSubjectHierarchyComboBox",
}


def _cases() -> list:
    cases = []
    for path in sorted(TESTS.glob("test_*.py")):
        spec = importlib.util.spec_from_file_location(f"slicer_tests.{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        for case in unittest.defaultTestLoader.loadTestsFromModule(module):
            cases.extend(case)
    return cases


CASES = _cases()


def test_every_skip_names_a_test_and_an_absent_widget():
    names = {case._testMethodName for case in CASES}
    absent = set(ABSENT["ctk"]) | set(ABSENT["slicer"])
    assert set(NEEDS_ABSENT_WIDGET) <= names and set(NEEDS_ABSENT_WIDGET.values()) <= absent


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{type(case).__name__}.{case._testMethodName}")
def test_slicer_wrapper_test(case):
    widget = NEEDS_ABSENT_WIDGET.get(case._testMethodName)
    if widget:
        pytest.skip(f"needs {widget}, which the harness does not provide")
    result = unittest.TestResult()
    case.run(result)
    problems = result.errors + result.failures
    assert not problems, problems[0][1]
    assert not result.skipped, result.skipped
