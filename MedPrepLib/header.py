"""A DICOM header as a flat list of display rows, for the `medprep header` command and the Slicer table.

Every element becomes one `HeaderRow`; a sequence becomes a row for the sequence, then for each
item an "Item N" marker row followed by the item's own rows. Rows never fail to build: a value that
pydicom cannot interpret is shown as its raw bytes, and pixel data is summarised, never decoded.
"""
from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from pydicom import datadict
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

from .errors import MedPrepError
from .pixeldata import PIXEL_TAGS

# Long values are cut so that a table row stays readable; the full value stays in the data set.
MAX_VALUE_CHARS = 200
# Tag text of the marker row that starts each sequence item.
ITEM_TAG = "FFFE,E000"
# Values of these VRs are shown as their length only (readable text that arrives as "UN" excepted).
_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW", "US or SS or OW"}
_TAG_RE = re.compile(r"^\(?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*\)?$")


@dataclass(frozen=True)
class HeaderRow:
    """One line of a DICOM header listing.

    tag: "GGGG,EEEE" in upper-case hex ("FFFE,E000" for item marker rows).
    keyword: the DICOM keyword ("PatientName"); "" for private and unknown tags.
    name: human-readable description ("Patient's Name", a private dictionary name such as
        "CSA Image Header Info", "Private Creator", or "Item 1" for item marker rows); "" if unknown.
    vr: value representation ("PN", "SQ", ...); "" for item marker rows.
    value: display string: multiple values joined with "\\", control characters escaped, long
        values cut to MAX_VALUE_CHARS, binary data as "<N bytes>", sequences as "N items".
    depth: 0 at the top level, +1 for each enclosing sequence.
    is_private: the tag is in an odd (private) group.
    private_creator: for private tags, the creator string that reserves their block; "" otherwise.
    path: unique position in the data set, e.g. "ReferencedSeriesSequence[0].SeriesInstanceUID";
        tags without a keyword appear as "(GGGG,EEEE)", item marker rows end with "[index]".
    """

    tag: str
    keyword: str
    name: str
    vr: str
    value: str
    depth: int
    is_private: bool
    private_creator: str
    path: str


def header_rows(ds: Dataset, include_private: bool = True) -> list[HeaderRow]:
    """Rows for the file meta information (group 0002) and then every element of `ds`, in order."""
    rows: list[HeaderRow] = []
    with warnings.catch_warnings():
        # pydicom warns about each invalid value it meets; the rows show those values as they are.
        warnings.simplefilter("ignore")
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            _add_rows(rows, meta, depth=0, prefix="", include_private=include_private)
        _add_rows(rows, ds, depth=0, prefix="", include_private=include_private)
    return rows


def parse_tag(text: str) -> BaseTag:
    """Read a tag written as "GGGG,EEEE", "(GGGG,EEEE)" or "GGGGEEEE"."""
    match = _TAG_RE.match(text.strip())
    if not match:
        raise MedPrepError(f"invalid tag {text!r}", hint="write it as GGGG,EEEE in hex, e.g. 0010,0010")
    return Tag(int(match.group(1), 16), int(match.group(2), 16))


def check_keyword(keyword: str) -> str:
    """Return the dictionary spelling of a DICOM keyword given in any case."""
    known = _keywords_by_folded_case()
    found = known.get(keyword.casefold())
    if found is None:
        close = difflib.get_close_matches(keyword, list(known.values()), n=1)
        hint = f"did you mean {close[0]}?" if close else "use a keyword from the DICOM dictionary, e.g. PatientName"
        raise MedPrepError(f"unknown DICOM keyword {keyword!r}", hint=hint)
    return found


def filter_rows(rows: Iterable[HeaderRow], tag: str | None = None, keyword: str | None = None,
                search: str | None = None, private: bool | None = None) -> list[HeaderRow]:
    """Rows that match every given criterion, kept with their context.

    tag: rows with this tag (any form parse_tag accepts), at any depth.
    keyword: rows whose keyword equals this one, ignoring case.
    search: rows whose tag, keyword, name or value contains this text, ignoring case.
    private: True keeps only private rows, False drops private rows, None keeps both.

    A kept sequence or item brings its whole content along, and a kept nested row brings the
    sequence and item rows that enclose it, so the result still reads as a header. Rows inside a
    private sequence are dropped with it when private is False.
    """
    rows = list(rows)
    want_tag = _tag_text(parse_tag(tag)) if tag is not None else None
    want_keyword = keyword.casefold() if keyword is not None else None
    needle = search.casefold() if search is not None else None
    has_criteria = want_tag is not None or want_keyword is not None or needle is not None or private is True

    matched = [False] * len(rows)
    keep = [False] * len(rows)
    hidden = [False] * len(rows)
    stack: list[int] = []  # indices of the sequence and item rows enclosing the current row
    for i, row in enumerate(rows):
        while stack and not _encloses(rows[stack[-1]], row):
            stack.pop()
        if private is False and (row.is_private or any(hidden[j] for j in stack)):
            hidden[i] = True
        else:
            matched[i] = not has_criteria or _is_match(row, want_tag, want_keyword, needle, private)
            if matched[i] or any(matched[j] for j in stack):
                keep[i] = True
                for j in stack:
                    keep[j] = True
        if row.vr == "SQ" or row.tag == ITEM_TAG:
            stack.append(i)
    return [row for i, row in enumerate(rows) if keep[i] and not hidden[i]]


def _is_match(row: HeaderRow, tag: str | None, keyword: str | None, needle: str | None,
              private: bool | None) -> bool:
    if tag is not None and row.tag != tag:
        return False
    if keyword is not None and row.keyword.casefold() != keyword:
        return False
    if private is True and not row.is_private:
        return False
    if needle is not None:
        return any(needle in text.casefold() for text in (row.tag, row.keyword, row.name, row.value))
    return True


def _encloses(container: HeaderRow, row: HeaderRow) -> bool:
    return row.path.startswith(container.path + "[") or row.path.startswith(container.path + ".")


def _add_rows(rows: list[HeaderRow], ds: Dataset, depth: int, prefix: str, include_private: bool) -> None:
    for tag in sorted(ds.keys()):
        if tag.group % 2 == 1 and not include_private:
            continue
        creator = _private_creator(ds, tag)
        keyword, name = _describe(tag, creator)
        path = prefix + (keyword or f"({_tag_text(tag)})")
        vr, value = _element_vr_value(ds, tag, creator)
        if isinstance(value, Sequence):
            count = len(value)
            rows.append(HeaderRow(_tag_text(tag), keyword, name, "SQ", f"{count} item{'' if count == 1 else 's'}",
                                  depth, tag.group % 2 == 1, creator, path))
            for index, item in enumerate(value):
                item_path = f"{path}[{index}]"
                rows.append(HeaderRow(ITEM_TAG, "", f"Item {index + 1}", "", "",
                                      depth + 1, False, "", item_path))
                if isinstance(item, Dataset):
                    _add_rows(rows, item, depth + 1, item_path + ".", include_private)
            continue
        rows.append(HeaderRow(_tag_text(tag), keyword, name, vr, _display(tag, vr, value),
                              depth, tag.group % 2 == 1, creator, path))


def _element_vr_value(ds: Dataset, tag: BaseTag, creator: str) -> tuple[str, object]:
    """The element's VR and value, or its VR and raw bytes when pydicom cannot convert it."""
    try:
        elem = ds[tag]
        return _vr_text(elem.VR), elem.value
    except Exception:  # noqa: BLE001 - any conversion failure means "show the raw value"
        raw = ds.get_item(tag)
        vr = getattr(raw, "VR", None) or _dictionary_vr(tag, creator)
        return _vr_text(vr), getattr(raw, "value", b"")


def _vr_text(vr: object) -> str:
    # pydicom 2.4 has VR enum members whose str() is "VR.UN"; their .value is the plain "UN".
    return str(getattr(vr, "value", vr) or "UN")


def _display(tag: BaseTag, vr: str, value: object) -> str:
    if int(tag) in PIXEL_TAGS:
        size = len(value) if isinstance(value, (bytes, bytearray)) else 0
        return f"<pixel data: {size} bytes, not decoded>"
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return _bytes_text(bytes(value), vr)
    if isinstance(value, (MultiValue, list, tuple)):
        text = "\\".join(_one_value(v) for v in value)
    else:
        text = _one_value(value)
    return _clip(_escape(text))


def _one_value(value: object) -> str:
    if isinstance(value, BaseTag):
        return f"({_tag_text(value)})"
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("ascii", "backslashreplace")
    return str(value)


def _bytes_text(data: bytes, vr: str) -> str:
    """Binary values as their length; undecoded text (VR UN, or a failed conversion) as escaped text."""
    stripped = data.rstrip(b"\x00 ")
    looks_textual = bool(stripped) and all(32 <= b < 127 for b in stripped)
    if vr in _BINARY_VRS and not (vr == "UN" and looks_textual):
        return f"<{len(data)} bytes>"
    return _clip(_escape(stripped.decode("ascii", "backslashreplace")))


def _escape(text: str) -> str:
    """Non-printable characters as escapes: they would break a one-line cell or drive a terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _clip(text: str) -> str:
    if len(text) <= MAX_VALUE_CHARS:
        return text
    return f"{text[:MAX_VALUE_CHARS]}... ({len(text)} characters)"


def _private_creator(ds: Dataset, tag: BaseTag) -> str:
    if tag.group % 2 == 0 or tag.element < 0x10:
        return ""
    if tag.element <= 0xFF:  # a private creator element names the block it reserves
        return _creator_text(ds, tag)
    return _creator_text(ds, Tag(tag.group, tag.element >> 8))


def _creator_text(ds: Dataset, creator_tag: BaseTag) -> str:
    if creator_tag not in ds:
        return ""
    try:
        value = ds[creator_tag].value
    except Exception:  # noqa: BLE001 - an unreadable creator is shown as unknown
        return ""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1")
    return _escape(str(value).strip())


def _describe(tag: BaseTag, creator: str) -> tuple[str, str]:
    """(keyword, name) from the public or private data dictionary; empty strings when unknown."""
    if tag.group % 2 == 1:
        if 0x10 <= tag.element <= 0xFF:
            return "", "Private Creator"
        if tag.element == 0:
            return "", "Private Group Length"
        try:
            return "", str(datadict.get_private_entry(tag, creator)[2])
        except Exception:  # noqa: BLE001 - pydicom raises KeyError or ValueError for unknown entries
            return "", ""
    try:
        return datadict.keyword_for_tag(tag), datadict.dictionary_description(tag)
    except Exception:  # noqa: BLE001 - unknown public tag
        return "", ""


def _dictionary_vr(tag: BaseTag, creator: str) -> str:
    try:
        if tag.group % 2 == 1:
            return str(datadict.get_private_entry(tag, creator)[0])
        return str(datadict.dictionary_VR(tag))
    except Exception:  # noqa: BLE001 - unknown tag
        return "UN"


def _tag_text(tag: BaseTag) -> str:
    return f"{tag.group:04X},{tag.element:04X}"


def _keywords_by_folded_case() -> dict[str, str]:
    return {keyword.casefold(): keyword for keyword in datadict.keyword_dict}
