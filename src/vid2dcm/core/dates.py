"""DICOM DA/DT values and the day arguments users type ("today" or YYYYMMDD)."""

from __future__ import annotations

from datetime import date, datetime


def parse_da(value: object) -> date | None:
    """A DA value (YYYYMMDD) as a date; None when empty or malformed."""
    try:
        return datetime.strptime(str(value), "%Y%m%d").date() if value else None
    except ValueError:
        return None


def parse_dt(value: object) -> datetime | None:
    """A DT value with or without fractional seconds; None when empty or malformed."""
    text = str(value or "")
    for fmt in ("%Y%m%d%H%M%S.%f", "%Y%m%d%H%M%S"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def parse_day(text: str) -> date:
    """'today' or YYYYMMDD; ValueError otherwise."""
    return date.today() if text == "today" else datetime.strptime(text, "%Y%m%d").date()
