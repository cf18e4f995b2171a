"""Output file names from a dcm2niix-style template such as "%p_%s", made safe for any file system.

Placeholders (case-insensitive), every one dcm2niix's `-f` knows (its FILENAMING.md and
nii_dicom_batch.cpp), with the same sources and fallbacks:

    %a coil name (Siemens 0051,100F, else ReceiveCoilName)   %b file name of the first DICOM
    %c image comments                  %d series description      %e echo number
    %f input folder name               %g accession number        %i patient ID
    %j series instance UID             %k study instance UID      %l procedure step description
    %m manufacturer, short (GE, Ph, Si, To, Ca, UI, Br; NA otherwise)
    %n patient name                    %o media storage SOP instance UID
    %p protocol name (else the series description, else the sequence name except for Siemens)
    %q scanning sequence               %r instance number         %s series number
    %t study date+time: StudyDate x 1e6 + StudyTime, the time alone when the date is missing
       or de-identified ("***")
    %u acquisition number              %v vendor (GE, Philips, Siemens, Toshiba, Canon, UIH, Bruker; NA)
    %x study ID                        %y GE RawDataRunNumber (0019,10A2), else temporal position
    %z sequence name                   %4s %4r %4y zero-padded to 4 digits        %% a literal "%"

With %e in the template a split series gets no "_eN" postfix (the echo is in the name already).

Names follow dcm2niix's rules for ordinary characters, so that our outputs and dcm2niix's are
named alike: spaces and the characters  \\ / < > : ; " * | ?  become "_", runs of "_" collapse to
one, Latin accents are dropped, and an empty value renders as nothing ("%p_%s" with no protocol
name gives "_2"). On top of that a name never contains a path separator or control character, never
starts with "." or "-", is never empty, and is bounded in length.
"""
from __future__ import annotations

import re
import unicodedata
import warnings
from collections.abc import Iterator, Mapping

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from .errors import MedPrepError

# Placeholder letter -> key of the `fields` mapping that render_name reads.
PLACEHOLDERS = {
    "a": "coil_name",
    "b": "file_name",
    "c": "comments",
    "d": "series_description",
    "e": "echo_number",
    "f": "folder_name",
    "g": "accession_number",
    "i": "patient_id",
    "j": "series_uid",
    "k": "study_uid",
    "l": "procedure_step",
    "m": "vendor_short",
    "n": "patient_name",
    "o": "instance_uid",
    "p": "protocol_name",
    "q": "scanning_sequence",
    "r": "instance_number",
    "s": "series_number",
    "t": "datetime",
    "u": "acquisition_number",
    "v": "vendor",
    "x": "study_id",
    "y": "run_number",
    "z": "sequence_name",
}
# Placeholders that name files or folders of the input, which often carry a patient's name.
INPUT_PATH_PLACEHOLDERS = ("f", "b")
FALLBACK_NAME = "series"
# Bounds keep names well below the 255-byte limit of common file systems, leaving room for a
# postfix ("_e2_ph"), a collision letter and an extension such as ".nii.gz".
MAX_VALUE_CHARS = 64
MAX_NAME_BYTES = 200
MAX_POSTFIX_BYTES = 32

# dcm2niix restricts names to what Windows allows, and replaces the space too.
_FORBIDDEN = set('\\/<>:;"*|? ')
# Windows refuses these as a file name stem, whatever the extension.
_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)}
_PLACEHOLDER_RE = re.compile(r"%([0-9]?)(.?)", re.DOTALL)
# First word of a manufacturer name -> the vendor name dcm2niix writes for %v.
_VENDORS = {
    "siemens": "Siemens",
    "ge": "GE",
    "philips": "Philips",
    "toshiba": "Toshiba",
    "canon": "Canon",
    "hitachi": "Hitachi",
    "uih": "UIH",
    "united": "UIH",  # "United Imaging Healthcare"
    "bruker": "Bruker",
}
# %v and %m: the vendors dcm2niix names (long and short); any other manufacturer is "NA".
_VENDOR_SHORT = {"GE": "GE", "Philips": "Ph", "Siemens": "Si", "Toshiba": "To", "Canon": "Ca", "UIH": "UI",
                 "Bruker": "Br"}
# Placeholders that take a zero-padding width, as dcm2niix's %4s, %3r, %2y.
_PADDED = ("s", "r", "y")


def render_name(template: str, fields: Mapping[str, str | None]) -> str:
    """Fill `template`'s placeholders from `fields` (keys as in PLACEHOLDERS) and make the result safe.

    Missing or None fields render as "". Raises MedPrepError for an unknown placeholder, so
    `render_name(template, {})` checks a user's template before any conversion starts.
    """
    parts = []
    for literal, width, letter in _parse(template):
        parts.append(literal)
        if letter == "%":
            parts.append("%")
        elif letter:
            raw = fields.get(PLACEHOLDERS[letter])
            value = "" if raw is None else str(raw)
            if width and value.isdigit():
                value = value.zfill(width)
            parts.append(value[:MAX_VALUE_CHARS])
    return safe_name("".join(parts))


def placeholders(template: str) -> set[str]:
    """The placeholder letters a template uses (lower case); raises MedPrepError like render_name."""
    return {letter for _, _, letter in _parse(template) if letter and letter != "%"}


def safe_name(name: str) -> str:
    """`name` with dcm2niix's character rules applied, made safe to use as one file name."""
    text = "".join(_safe_char(c) for c in _fold_accents(name))
    # A leading "." would hide the file (and ".." is a parent folder); a leading "-" reads as an option.
    stripped = text.lstrip(".-")
    text = "_" * (len(text) - len(stripped)) + stripped
    text = re.sub("_{2,}", "_", text)
    stem, dot, rest = text.partition(".")
    if stem.upper() in _RESERVED:
        text = stem + "_" + dot + rest
    text = _clip_bytes(text, MAX_NAME_BYTES)
    return FALLBACK_NAME if text.strip("_") == "" else text


def postfix_for(template: str, postfix: str) -> str:
    """A split series' postfix as dcm2niix adds it under `template`: no "_eN" when %e names the echo."""
    if "e" in placeholders(template):
        return re.sub(r"^_e\d+", "", postfix)
    return postfix


def unique_name(base: str, taken: set, postfix: str | None = None) -> str:
    """`base` plus `postfix`, with a letter appended if that name is taken; the result is added to `taken`.

    postfix follows dcm2niix's conventions for images split from one series: "_e2" (echo 2),
    "_ph" (phase), "_real", "_imaginary", "_Tilt", "_Eq", and combinations such as "_e2_ph".
    Like dcm2niix, a name already in use gets "a", then "b", ... "z"; after that "aa", "ab", ...
    Names are compared ignoring case, since macOS and Windows file systems do.
    """
    name = safe_name(base)
    if postfix:
        tail = _clip_bytes("".join(_safe_char(c) for c in _fold_accents(postfix)), MAX_POSTFIX_BYTES)
        name = re.sub("_{2,}", "_", name + tail)
    used = {t.casefold() for t in taken}
    candidate = name
    count = 0
    while candidate.casefold() in used:
        count += 1
        candidate = name + _letters(count)
    taken.add(candidate)
    return candidate


def fields_from_dataset(ds: Dataset, folder_name: str | None, file_name: str | None = None) -> dict[str, str | None]:
    """The render_name fields of a series, from the header of one of its files.

    As in dcm2niix, %p falls back to the SeriesDescription and then (except for Siemens, whose
    sequence name varies within a DWI series) to the SequenceName when ProtocolName is empty, and
    %t is StudyDate x 1e6 + StudyTime: the time alone when the date is missing or de-identified
    ("***"), so that series of one protocol at different study times keep apart.
    """
    with warnings.catch_warnings():
        # Invalid values are still worth a name; pydicom's warnings about them are not news here.
        warnings.simplefilter("ignore")
        vendor = vendor_name(_text(ds, "Manufacturer"))
        protocol = _text(ds, "ProtocolName")
        description = _text(ds, "SeriesDescription")
        if not protocol and description and len(description) > 1:
            protocol = description
        if not protocol and vendor != "Siemens":
            protocol = _text(ds, "SequenceName")
        return {
            "coil_name": _private_text(ds, "SIEMENS MR HEADER", 0x0051, 0x0F) or _text(ds, "ReceiveCoilName"),
            "file_name": file_name or None,
            "comments": _text(ds, "ImageComments"),
            "series_description": description,
            "echo_number": _number(_text(ds, "EchoNumbers")),
            "folder_name": folder_name or None,
            "accession_number": _text(ds, "AccessionNumber"),
            "patient_id": _text(ds, "PatientID"),
            "series_uid": _text(ds, "SeriesInstanceUID"),
            "study_uid": _text(ds, "StudyInstanceUID"),
            "procedure_step": _text(ds, "PerformedProcedureStepDescription"),
            "vendor_short": _VENDOR_SHORT.get(vendor or "", "NA"),
            "scanning_sequence": _text(ds, "ScanningSequence"),
            "patient_name": _text(ds, "PatientName"),
            "instance_uid": _text(getattr(ds, "file_meta", Dataset()), "MediaStorageSOPInstanceUID")
            or _text(ds, "SOPInstanceUID"),
            "protocol_name": protocol,
            "instance_number": _number(_text(ds, "InstanceNumber")),
            "series_number": _number(_text(ds, "SeriesNumber")),
            "datetime": _datetime(_text(ds, "StudyDate"), _text(ds, "StudyTime")),
            "acquisition_number": _number(_text(ds, "AcquisitionNumber")),
            "vendor": vendor if vendor in _VENDOR_SHORT else "NA",
            "study_id": _text(ds, "StudyID"),
            "run_number": (_number(_private_text(ds, "GEMS_ACQU_01", 0x0019, 0xA2)) if vendor == "GE" else None)
            or _number(_text(ds, "TemporalPositionIdentifier")),
            "sequence_name": _text(ds, "SequenceName"),
        }


def vendor_name(manufacturer: str | None) -> str | None:
    """dcm2niix's short vendor name ("SIEMENS" -> "Siemens"), else the manufacturer's first word."""
    words = re.findall(r"[^\W_]+", manufacturer or "")
    if not words:
        return None
    return _VENDORS.get(words[0].casefold(), words[0])


def _parse(template: str) -> Iterator[tuple[str, int, str]]:
    """Yield (literal text, pad width, placeholder letter or "%" or "") for each piece of template."""
    pos = 0
    for match in _PLACEHOLDER_RE.finditer(template):
        width, letter = match.group(1), match.group(2).lower()
        if (letter != "%" and letter not in PLACEHOLDERS) or (width and letter not in _PADDED):
            known = " ".join("%" + k for k in PLACEHOLDERS)
            raise MedPrepError(f"unknown placeholder {match.group(0)!r} in name template {template!r}",
                               hint=f"use {known}, %4s / %4r / %4y (zero-padded) or %% for a literal %")
        yield template[pos:match.start()], int(width or 0), letter
        pos = match.end()
    yield template[pos:], 0, ""


def _fold_accents(text: str) -> str:
    """Latin letters without their accents ("é" -> "e"), as dcm2niix does for ISO 8859-1 names."""
    out = []
    for char in text:
        if ord(char) < 128:
            out.append(char)
            continue
        bare = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
        out.append(bare if bare and bare.isascii() else char)
    return "".join(out)


def _safe_char(char: str) -> str:
    # Control, format, separator, surrogate (undecodable byte), private-use and unassigned characters
    # and U+FFFD (a byte that could not be decoded) all become "_", like the forbidden characters.
    if char in _FORBIDDEN or char == "\ufffd" or unicodedata.category(char)[0] in "CZ":
        return "_"
    return char


def _clip_bytes(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def _letters(count: int) -> str:
    """1 -> "a", 26 -> "z", 27 -> "aa": the letter suffixes dcm2niix uses, continued past "z"."""
    letters = ""
    while count > 0:
        count, rest = divmod(count - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return letters


def _text(ds: Dataset, keyword: str) -> str | None:
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - an unreadable value gives no name part, not a failed conversion
        return None
    return _format(value)


def _format(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    elif isinstance(value, (MultiValue, list, tuple)):
        value = "\\".join(str(v) for v in value)
    text = str(value).strip()
    return text or None


def _number(text: str | None) -> str | None:
    """An integer string ("3.0" -> "3", first of several values); other text unchanged."""
    if text is None:
        return None
    first = text.split("\\")[0].strip()
    try:
        return str(int(float(first)))
    except (ValueError, OverflowError):
        return first or None


def _private_text(ds: Dataset, creator: str, group: int, offset: int) -> str | None:
    try:
        block = ds.private_block(group, creator)
        if offset not in block:
            return None
        return _format(block[offset].value)
    except (KeyError, ValueError, TypeError):
        return None


def _datetime(date: str | None, time: str | None) -> str | None:
    """dcm2niix's %t: StudyDate x 1e6 + StudyTime (hhmmss.ffffff as one number), printed rounded.

    A date that is not 8 digits (missing, or "***" after de-identification) counts as 0, as C's
    atof makes it in dcm2niix: the name then carries the time alone.
    """
    digits = re.sub(r"\D", "", date or "")
    day = int(digits) if len(digits) == 8 else 0
    match = re.match(r"(\d{2,6})(\.\d*)?", (time or "").replace(":", "").strip())
    if not day and not match:
        return None
    clock = 0.0
    if match:
        clock = float(match.group(1).ljust(6, "0") + (match.group(2) or ""))
    return "%.0f" % (day * 1_000_000 + clock)
