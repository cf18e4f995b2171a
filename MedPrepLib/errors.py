"""Errors that reach the user as one line: what went wrong, which file, what to do."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union


class MedPrepError(Exception):
    """An error caused by the input or the environment, reported without a traceback."""

    def __init__(self, what: str, path: Optional[Union[str, Path]] = None, hint: Optional[str] = None):
        self.what = what
        self.path = str(path) if path is not None else None
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = [self.what]
        if self.path:
            parts.append(f"({self.path})")
        line = " ".join(parts)
        if self.hint:
            line += f"; {self.hint}"
        return line


class NotDicomError(MedPrepError):
    """The file is not a DICOM Part 10 file (or a bare data set)."""


class SeriesError(MedPrepError):
    """A series cannot be assembled into a volume."""
