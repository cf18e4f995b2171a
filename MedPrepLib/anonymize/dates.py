"""Shifting DA and DT values by whole days; a value that cannot be read is not kept."""
from __future__ import annotations

import datetime
from typing import Optional

_DA = "%Y%m%d"


def shift_date(value: str, days: int) -> Optional[str]:
    """A DA value (YYYYMMDD) moved by `days`, or None when it is not a valid date."""
    value = value.strip()
    if len(value) != 8 or not value.isdigit():
        return None
    try:
        day = datetime.datetime.strptime(value, _DA).date()
        return (day + datetime.timedelta(days=days)).strftime(_DA)
    except (ValueError, OverflowError):
        return None


def shift_datetime(value: str, days: int) -> Optional[str]:
    """A DT value with its date part moved by `days`; time and UTC offset stay as they were.

    DT may stop after the year or month; such values cannot keep an exact interval and give None.
    """
    value = value.strip()
    date = shift_date(value[:8], days)
    return None if date is None else date + value[8:]
