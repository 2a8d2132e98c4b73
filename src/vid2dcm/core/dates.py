"""DICOM DA/DT values, the day arguments users type ("today" or YYYYMMDD), and dates, times and
date-times typed in metadata files in either DICOM or ISO 8601 form."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone


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


# --- values people type (metadata files, options): DICOM forms and ISO 8601 forms --------------
# PS3.5 6.2: DA is YYYYMMDD, TM is HH[MM[SS[.F{1,6}]]], DT is YYYY[MM[DD[HH[MM[SS[.F{1,6}]]]]]]
# with an optional &ZZXX offset. ISO 8601 forms are accepted too, since that is what most
# tools and spreadsheets write. Anything else is refused with an example of each form.

DATE_EXAMPLES = "DICOM DA 19700131 or ISO 1970-01-31"
TIME_EXAMPLES = "DICOM TM 143000 (or 1430, 143000.25) or ISO 14:30:00"
DATETIME_EXAMPLES = ("DICOM DT 20240131143000 (optionally .123456 and +0100) or "
                     "ISO 2024-01-31T14:30:00")

_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^(?P<h>\d{2})(?P<m>\d{2})?(?P<s>\d{2})?(?:\.(?P<f>\d{1,6}))?$")
_DT = re.compile(r"^(?P<date>\d{8})(?P<time>\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?"
                 r"(?P<tz>[+-]\d{4})?$")


def read_date(text: str) -> date:
    """DICOM DA (19700131) or ISO (1970-01-31); ValueError naming both forms otherwise."""
    text = text.strip()
    try:
        if _DA.match(text):
            return datetime.strptime(text, "%Y%m%d").date()
        if len(text) == 10 and text[4] == "-":
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise ValueError(f"is not a date: use {DATE_EXAMPLES}")


def read_time(text: str) -> time:
    """DICOM TM (143000, 1430, 143000.25) or ISO (14:30, 14:30:00.5); ValueError otherwise."""
    text = text.strip()
    try:
        match = _TM.match(text)
        if match:
            fraction = (match["f"] or "").ljust(6, "0")
            return time(int(match["h"]), int(match["m"] or 0), int(match["s"] or 0),
                        int(fraction or 0))
        if ":" in text:
            return time.fromisoformat(text)
    except ValueError:
        pass
    raise ValueError(f"is not a time: use {TIME_EXAMPLES}")


def read_datetime(text: str) -> datetime:
    """DICOM DT (20240131143000[.ffffff][+HHMM]) or ISO 8601; ValueError otherwise."""
    text = text.strip()
    try:
        match = _DT.match(text)
        if match:
            moment = datetime.combine(read_date(match["date"]),
                                      read_time(match["time"]) if match["time"] else time())
            if match["tz"]:
                sign = 1 if match["tz"][0] == "+" else -1
                hours, minutes = int(match["tz"][1:3]), int(match["tz"][3:5])
                moment = moment.replace(tzinfo=timezone(sign * timedelta(hours=hours,
                                                                         minutes=minutes)))
            return moment
        if len(text) >= 10 and text[4] == "-":
            return datetime.fromisoformat(text)
    except ValueError:
        pass
    raise ValueError(f"is not a date and time: use {DATETIME_EXAMPLES}")
