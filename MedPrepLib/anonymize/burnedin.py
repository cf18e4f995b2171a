"""Which objects may show identity in their pixels, where no header edit can remove it."""
from __future__ import annotations

from typing import Optional

from pydicom.dataset import Dataset

# SOP class UID prefixes of objects that are screenshots, scans or ultrasound, all of which
# commonly carry names and dates burned into the image.
# A class matches its root and every class below it (root + ".").
RISKY_SOP_ROOTS = (
    ("1.2.840.10008.5.1.4.1.1.7", "secondary capture"),
    ("1.2.840.10008.5.1.4.1.1.6", "ultrasound"),
    ("1.2.840.10008.5.1.4.1.1.3", "ultrasound multi-frame"),
    ("1.2.840.10008.5.1.4.1.1.77.1", "visible light"),
    ("1.2.840.10008.5.1.4.1.1.104", "encapsulated document"),
)
RISKY_MODALITIES = {
    "US": "ultrasound", "IVUS": "intravascular ultrasound", "OT": "other (often screenshots)",
    "SC": "secondary capture", "DOC": "scanned document", "XC": "photograph", "ES": "endoscopy",
    "GM": "microscopy", "SM": "slide microscopy",
}


def burned_in_reason(ds: Dataset) -> Optional[str]:
    """Why this object's pixels may carry identity, or None."""
    if str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
        return "BurnedInAnnotation is YES"
    sop = str(ds.get("SOPClassUID", "") or "")
    for root, what in RISKY_SOP_ROOTS:
        if sop == root or sop.startswith(root + "."):
            return f"{what} object"
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality in RISKY_MODALITIES:
        return f"modality {modality} ({RISKY_MODALITIES[modality]})"
    if ds.get("ConversionType"):
        return "converted or scanned image (ConversionType present)"
    return None
