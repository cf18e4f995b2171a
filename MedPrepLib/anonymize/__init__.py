"""De-identification of DICOM per PS3.15 Annex E (Basic Application Level Confidentiality Profile).

`Anonymizer(key, options).anonymize(ds)` de-identifies one pydicom Dataset in place (full or
header-only); `anonymize_tree` writes a de-identified copy of a DICOM tree.
"""
from .anonymizer import Anonymizer
from .burnedin import burned_in_reason
from .options import AnonymizeOptions
from .tree import TreeReport, anonymize_tree, write_mapping

__all__ = ["Anonymizer", "AnonymizeOptions", "TreeReport", "anonymize_tree", "burned_in_reason",
           "write_mapping"]
