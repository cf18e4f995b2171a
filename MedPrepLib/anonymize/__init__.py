"""De-identification of DICOM per PS3.15 Annex E (Basic Application Level Confidentiality Profile).

`Anonymizer(key, options).anonymize(ds)` de-identifies one pydicom Dataset in place (full or
header-only); `anonymize_tree` writes a de-identified copy of a DICOM tree.

The names below are loaded on first use: `medprep convert` reads the option list (options.py) to
offer its --anonymize flags, and a run without --anonymize should not load the profile tables,
the anonymizer and the tree writer with its executors (about 0.1 s of every start-up);
`medprep anonymize` starts its workers before it imports pydicom itself.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, List

if TYPE_CHECKING:
    from .anonymizer import Anonymizer
    from .burnedin import burned_in_reason
    from .options import AnonymizeOptions
    from .tree import TreeReport, anonymize_tree, write_mapping

# Public name -> the module of this package that defines it.
_HOME = {
    "Anonymizer": "anonymizer",
    "AnonymizeOptions": "options",
    "TreeReport": "tree",
    "anonymize_tree": "tree",
    "burned_in_reason": "burnedin",
    "write_mapping": "tree",
}

__all__ = ["Anonymizer", "AnonymizeOptions", "TreeReport", "anonymize_tree", "burned_in_reason",
           "write_mapping"]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_HOME))
