"""Private attributes kept by the Retain Safe Private option: a safelist, everything else goes.

Each entry is (private creator, group, element within the block). Only attributes that hold
acquisition parameters and that converters need to rebuild the image are listed; none carries
free text entered at the scanner.
"""
from __future__ import annotations

from typing import FrozenSet, Tuple

SAFE_PRIVATE: FrozenSet[Tuple[str, int, int]] = frozenset({
    # Siemens: mosaic layout, diffusion, slice timing (PS3.15 E.3.10 lists most of these as safe).
    ("SIEMENS MR HEADER", 0x0019, 0x08),  # ImagingMode
    ("SIEMENS MR HEADER", 0x0019, 0x0A),  # NumberOfImagesInMosaic
    ("SIEMENS MR HEADER", 0x0019, 0x0B),  # SliceMeasurementDuration
    ("SIEMENS MR HEADER", 0x0019, 0x0C),  # B_value
    ("SIEMENS MR HEADER", 0x0019, 0x0D),  # DiffusionDirectionality
    ("SIEMENS MR HEADER", 0x0019, 0x0E),  # DiffusionGradientDirection
    ("SIEMENS MR HEADER", 0x0019, 0x27),  # B_matrix
    ("SIEMENS MR HEADER", 0x0019, 0x28),  # BandwidthPerPixelPhaseEncode
    ("SIEMENS MR HEADER", 0x0019, 0x29),  # MosaicRefAcqTimes
    # (Not the CSA header version (0029,xx09): Siemens writes a date there, often the study date.)
    ("SIEMENS CSA HEADER", 0x0029, 0x10),  # CSA image header (per-image geometry, mosaic, diffusion)
    # Siemens XA enhanced: the per-frame private item and in it the ICE dimensions, whose first loop
    # counter is the echo number (XA objects carry no EchoNumbers; the item's other elements go).
    ("SIEMENS MR SDI 02", 0x0021, 0xFE),  # per-frame private sequence
    ("SIEMENS MR SDI 02", 0x0021, 0x06),  # ICE dims "X_<echo>_..."
    # GE: diffusion b-value and gradient.
    ("GEMS_PARM_01", 0x0043, 0x39),  # slop_int_6..9 (b-value)
    ("GEMS_ACQU_01", 0x0019, 0xBB),  # user data 20 (gradient x)
    ("GEMS_ACQU_01", 0x0019, 0xBC),  # user data 21 (gradient y)
    ("GEMS_ACQU_01", 0x0019, 0xBD),  # user data 22 (gradient z)
    # Philips: diffusion, floating-point scaling and image type, per-frame private sequence.
    ("Philips Imaging DD 001", 0x2001, 0x03),  # DiffusionB-Factor
    ("Philips MR Imaging DD 001", 0x2005, 0x0D),  # ScaleIntercept
    ("Philips MR Imaging DD 001", 0x2005, 0x0E),  # ScaleSlope
    ("Philips MR Imaging DD 001", 0x2005, 0x11),  # ImageType
    ("Philips MR Imaging DD 001", 0x2005, 0xB0),  # DiffusionDirectionRL
    ("Philips MR Imaging DD 001", 0x2005, 0xB1),  # DiffusionDirectionAP
    ("Philips MR Imaging DD 001", 0x2005, 0xB2),  # DiffusionDirectionFH
    ("Philips MR Imaging DD 005", 0x2005, 0x0F),  # per-frame private sequence (items are cleaned too)
    # United Imaging: the grid (mosaic) layout and diffusion (see MedPrepLib/uih.py).
    ("Image Private Header", 0x0065, 0x09),  # diffusion b-value
    ("Image Private Header", 0x0065, 0x37),  # diffusion gradient direction (image space)
    ("Image Private Header", 0x0065, 0x50),  # NumberOfImagesInGrid
    ("Image Private Header", 0x0065, 0x51),  # per-slice positions of the grid (items are cleaned too)
})


def is_safe(creator: str, tag: int) -> bool:
    return (creator.strip(), tag >> 16, tag & 0xFF) in SAFE_PRIVATE
