"""De-identification of DICOM per PS3.15 Annex E (Basic Application Level Confidentiality Profile).

`Anonymizer(key, options).anonymize(ds)` de-identifies one pydicom Dataset in place (full or
header-only); `anonymize_tree` writes a de-identified copy of a DICOM tree.

The names below are imported when first used: the command line builds its options from `options`
alone, and `medprep anonymize` starts its workers before it imports pydicom itself.
"""
from __future__ import annotations

import importlib
from typing import Any

_HOMES = {"Anonymizer": "anonymizer", "AnonymizeOptions": "options", "TreeReport": "tree",
          "anonymize_tree": "tree", "burned_in_reason": "burnedin", "write_mapping": "tree"}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
