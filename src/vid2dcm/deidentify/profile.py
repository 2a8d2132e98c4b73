"""PS3.15 Annex E header de-identification, driven by a pinned copy of Table E.1-1.

The action of every attribute comes from data/table_e1_1.tsv (the standard's table, not a hand
list): the Basic Profile column, overridden by the columns of the options the caller chose
(E.3). Combined codes (X/Z, X/D, X/Z/D, Z/D, X/Z/U*) are resolved to the variant that keeps any
IOD valid whatever the attribute's Type: D where D is allowed, else Z, else U for sequences
of references, else X (E.1.1 "Table E.1-1 ... codes"). Attributes not in the table are kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from functools import cache
from importlib import resources

from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

from vid2dcm.core.errors import UsageError
from vid2dcm.core.version import __version__
from vid2dcm.deidentify.pseudonyms import Pseudonymizer, date_formats, shift_date, shift_datetime


class Action(StrEnum):
    """Table E.1-1 action codes (E.1.1)."""

    REMOVE = "X"
    EMPTY = "Z"
    DUMMY = "D"
    KEEP = "K"
    CLEAN = "C"
    NEW_UID = "U"


@dataclass(frozen=True)
class ProfileOptions:
    """The Basic Profile's options (PS3.15 E.3). The defaults make the command safe as typed:
    Basic + Clean Pixel Data + Clean Descriptors, audio removed."""

    clean_pixel_data: bool = True
    clean_recognizable_visual_features: bool = False
    clean_graphics: bool = False
    clean_structured_content: bool = False
    clean_descriptors: bool = True
    retain_full_dates: bool = False
    retain_modified_dates: bool = False
    retain_patient_characteristics: bool = False
    retain_device_identity: bool = False
    retain_uids: bool = False
    retain_safe_private: bool = False
    retain_institution_identity: bool = False
    remove_audio: bool = True

    def __post_init__(self) -> None:
        if self.retain_full_dates and self.retain_modified_dates:
            raise UsageError("choose either full dates or modified dates, not both")

    @property
    def selected(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self)
                     if getattr(self, f.name) and f.name in OPTION_CODES)


OPTION_CODES: dict[str, tuple[str, str]] = {
    "clean_pixel_data": ("113101", "Clean Pixel Data Option"),
    "clean_recognizable_visual_features": ("113102", "Clean Recognizable Visual Features Option"),
    "clean_graphics": ("113103", "Clean Graphics Option"),
    "clean_structured_content": ("113104", "Clean Structured Content Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "retain_full_dates": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "retain_modified_dates": ("113107",
                              "Retain Longitudinal Temporal Information Modified Dates Option"),
    "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
    "retain_uids": ("113110", "Retain UIDs Option"),
    "retain_safe_private": ("113111", "Retain Safe Private Option"),
    "retain_institution_identity": ("113112", "Retain Institution Identity Option"),
}
"""CID 7050 De-identification Method codes (DCM scheme), one per option."""

BASIC_CODE = ("113100", "Basic Application Confidentiality Profile")

OPTION_COLUMNS = ("retain_safe_private", "retain_uids", "retain_device_identity",
                  "retain_institution_identity", "retain_patient_characteristics",
                  "retain_full_dates", "retain_modified_dates", "clean_descriptors",
                  "clean_structured_content", "clean_graphics")
"""The table's option columns, as named in the TSV header (and in ProfileOptions)."""


@dataclass(frozen=True)
class TableRow:
    tag: str
    name: str
    basic: str
    options: dict[str, str] = field(default_factory=dict)

    def action(self, chosen: ProfileOptions) -> str:
        """The code to apply: an option's C beats its K (cleaning is the safer reading when
        two chosen options disagree), either beats the Basic Profile."""
        codes = [code for column, code in self.options.items() if getattr(chosen, column)]
        if "C" in codes:
            return "C"
        if "K" in codes:
            return "K"
        return self.basic


@dataclass(frozen=True)
class ActionTable:
    exact: dict[int, TableRow]
    masked: tuple[tuple[int, int, TableRow], ...]
    """(mask, value, row) for the repeating groups 50xx and 60xx."""
    private: TableRow

    def row(self, tag: BaseTag) -> TableRow | None:
        if tag.is_private:
            return self.private
        found = self.exact.get(int(tag))
        if found is not None:
            return found
        for mask, value, row in self.masked:
            if int(tag) & mask == value:
                return row
        return None


@cache
def action_table() -> ActionTable:
    """Parse the pinned Table E.1-1 shipped with the package."""
    text = resources.files("vid2dcm.deidentify").joinpath("data/table_e1_1.tsv").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    header = lines[0].split("\t")
    exact: dict[int, TableRow] = {}
    masked: list[tuple[int, int, TableRow]] = []
    private: TableRow | None = None
    for line in lines[1:]:
        cells = dict(zip(header, line.split("\t"), strict=True))
        row = TableRow(cells["tag"], cells["name"], cells["basic"],
                       {c: cells[c] for c in OPTION_COLUMNS if cells[c]})
        tag = cells["tag"]
        if "ODD" in tag:
            private = row
        elif "X" in tag:
            digits = tag.strip("()").replace(",", "")
            mask = int("".join("0" if ch == "X" else "F" for ch in digits), 16)
            value = int(digits.replace("X", "0"), 16)
            masked.append((mask, value, row))
        else:
            exact[int(tag.strip("()").replace(",", ""), 16)] = row
    if private is None:
        raise RuntimeError("the pinned Table E.1-1 has no private attributes row")
    return ActionTable(exact, tuple(masked), private)


SafePrivateKey = tuple[int, str, int]
"""(group, Private Creator, element within its block) of one safe private attribute."""


@dataclass(frozen=True)
class SafePrivateTable:
    """PS3.15 Table E.3.10-1 as pinned in data/safe_private.tsv."""

    edition: str
    rows: int
    keys: frozenset[SafePrivateKey]
    creators: frozenset[tuple[int, str]]
    """(group, Private Creator) pairs with at least one listed attribute."""
    vrs: dict[SafePrivateKey, frozenset[str]] = field(default_factory=dict)
    """The VR column of each row: one VR, alternatives ("OW/OB"), or none given (empty)."""


_TABLE_TAG = re.compile(r"\(([0-9A-Fa-f]{4}),xx([0-9A-Fa-f]{2})\)")


@cache
def safe_private_rows() -> SafePrivateTable:
    """The whole of PS3.15 Table E.3.10-1 (data/safe_private.tsv, generated by
    scripts/safe_private_table.py): the private attributes the Retain Safe Private Option
    keeps, each only under its own Private Creator (E.3.10: a private attribute is safe only
    as the creator that reserved its block defines it; the same element number under another
    creator may hold anything). The tag's "xx" is the block byte (PS3.5 7.8.1), the last two
    hex digits the element within the block, written in either case as the standard does."""
    text = resources.files("vid2dcm.deidentify").joinpath("data/safe_private.tsv").read_text(
        encoding="utf-8")
    edition = ""
    lines: list[str] = []
    for line in text.split("\n"):
        if line.startswith("# edition: "):
            edition = line.removeprefix("# edition: ").strip()
        elif line and not line.startswith("#"):
            lines.append(line)
    header = lines[0].split("\t")
    vrs: dict[SafePrivateKey, frozenset[str]] = {}
    for line in lines[1:]:
        cells = dict(zip(header, line.split("\t"), strict=True))
        match = _TABLE_TAG.fullmatch(cells["tag"])
        if match is None or int(match[1], 16) % 2 == 0:
            raise RuntimeError(f"safe_private.tsv: {cells['tag']} is not a private (gggg,xxee)")
        key = (int(match[1], 16), cells["private_creator"], int(match[2], 16))
        vrs[key] = frozenset(vr for vr in cells["vr"].split("/") if vr)
    return SafePrivateTable(edition, len(lines) - 1, frozenset(vrs),
                            frozenset((g, c) for g, c, _ in vrs), vrs)


def safe_private_table() -> frozenset[SafePrivateKey]:
    """The keys of every row of Table E.3.10-1."""
    return safe_private_rows().keys


PRIVATE_CHARACTERISTICS = Tag(0x0008, 0x0300)
"""Private Data Element Characteristics Sequence (PS3.3 C.12.1.1.7)."""


@dataclass(frozen=True)
class BlockDeclaration:
    """What a block's creator says of it in the Private Data Element Characteristics
    Sequence: Block Identifying Information Status (0008,0303) and, for MIXED, the
    Nonidentifying Private Elements (0008,0304) as element numbers within the block."""

    status: str
    nonidentifying: frozenset[int]


def declared_blocks(ds: Dataset) -> dict[tuple[int, str], BlockDeclaration]:
    """The blocks of `ds` that describe themselves (PS3.15 E.3.10 allows this as evidence of
    safety; PS3.3 C.12.1.1.7): (Private Group Reference, Private Creator Reference) ->
    declaration. An item without both references names no block and is ignored; a block
    described twice takes the stricter reading (the two statuses must agree, else UNSAFE)."""
    found: dict[tuple[int, str], BlockDeclaration] = {}
    elem = ds.get(PRIVATE_CHARACTERISTICS)
    if elem is None or elem.VR != "SQ" or not elem.value:
        return found
    for item in elem.value:
        key = _block_reference(item)
        if key is None:
            continue
        status_elem = item.get(0x00080303)
        # Enumerated Values, exactly: an invalid "safe" is not SAFE (when unsure, remove)
        status = str(status_elem.value).strip() if status_elem is not None else ""
        listed = item.get(0x00080304)
        try:
            numbers = _numbers(listed.value if listed is not None else None)
        except (TypeError, ValueError):  # a malformed list declares nothing safe
            numbers, status = [], "UNSAFE"
        declaration = BlockDeclaration(status, frozenset(n & 0xFF for n in numbers))
        if key in found and found[key] != declaration:
            declaration = BlockDeclaration("UNSAFE", frozenset())
        found[key] = declaration
    return found


def _block_reference(item: Dataset) -> tuple[int, str] | None:
    """(Private Group Reference, Private Creator Reference) of one item, or None when the
    item does not name exactly one block."""
    group, creator = item.get(0x00080301), item.get(0x00080302)
    if group is None or creator is None or not isinstance(group.value, int):
        return None
    if not isinstance(creator.value, str) or not creator.value.strip():
        return None
    return group.value, creator.value.strip()


def _numbers(value: object) -> list[int]:
    if value is None or value == "":
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]  # type: ignore[attr-defined]


def is_safe_private(ds: Dataset, tag: BaseTag,
                    declared: dict[tuple[int, str], BlockDeclaration] | None = None) -> bool:
    """Is this private attribute of `ds` safe to keep (Retain Safe Private, E.3.10)?

    A block that describes itself in `declared` (see declared_blocks) is judged by that
    declaration alone: SAFE keeps every element, MIXED only the Nonidentifying Private
    Elements, anything else (UNSAFE, no or an unknown status) none. A block that does not
    is judged by Table E.3.10-1 under its exact Private Creator, and the element's VR must
    be one the row gives (any VR where the row gives none; UN always, as an implicit-VR
    reader without the vendor's dictionary has nothing else to say): an element of the same
    number but another VR is not the attribute the table lists. A Private Creator element
    (gggg,0010-00FF) is kept when its block may hold something safe (it is dropped later if
    nothing of its block remains)."""
    declared = declared or {}
    table = safe_private_rows()
    if 0x10 <= tag.element <= 0xFF:
        creator = str(ds[tag].value).strip()
        declaration = declared.get((tag.group, creator))
        if declaration is not None:
            return declaration.status in ("SAFE", "MIXED")
        return (tag.group, creator) in table.creators
    block = tag.element >> 8
    if block < 0x10:
        return False
    owner = ds.get(Tag(tag.group, block))
    if owner is None:
        return False
    creator = str(owner.value).strip()
    declaration = declared.get((tag.group, creator))
    if declaration is not None:
        if declaration.status == "SAFE":
            return True
        return declaration.status == "MIXED" and (tag.element & 0xFF) in declaration.nonidentifying
    key = (tag.group, creator, tag.element & 0xFF)
    if key not in table.keys:
        return False
    allowed = table.vrs.get(key, frozenset())
    vr = str(ds[tag].VR)
    return not allowed or vr in allowed or vr == "UN"


def resolve(code: str, vr: str) -> Action:
    """One action for a combined code (E.1.1): keep the attribute present whenever the table
    allows it, so Type 1 and 2 attributes stay conformant in every IOD."""
    options = code.replace("*", "").split("/")
    if "K" in options:
        return Action.KEEP
    if "C" in options:
        return Action.CLEAN
    if "U" in options and (vr == "UI" or len(options) == 1):
        return Action.NEW_UID
    if "U" in options and vr == "SQ":
        return Action.NEW_UID
    if "D" in options:
        return Action.DUMMY
    if "Z" in options:
        return Action.EMPTY
    return Action.REMOVE


@dataclass(frozen=True)
class Identifiers:
    """What identifies the patient in the original header: the strings the descriptor
    cleaning removes from free text and the pixel verification must not read."""

    texts: tuple[str, ...]
    """Raw values: name parts, IDs, accession, dates in the formats overlays use."""

    @property
    def tokens(self) -> tuple[str, ...]:
        """Upper-case letters and digits only, at least 3 long (OCR matching)."""
        found = {normalize(t) for t in self.texts}
        return tuple(sorted(t for t in found if len(t) >= 3))


PERSON_ATTRIBUTES = ("PatientName", "OtherPatientNames", "PatientMotherBirthName",
                     "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName",
                     "NameOfPhysiciansReadingStudy", "RequestingPhysician")
ID_ATTRIBUTES = ("PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID",
                 "MedicalRecordLocator", "AdmissionID", "RequestedProcedureID")
DATE_ATTRIBUTES = ("PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate",
                   "ContentDate")


def collect_identifiers(ds: Dataset) -> Identifiers:
    texts: list[str] = []
    for keyword in PERSON_ATTRIBUTES:
        for value in _values(ds, keyword):
            texts.extend(p for p in re.split(r"[\^=\s,]+", value) if len(p) >= 2)
    for keyword in ID_ATTRIBUTES:
        texts.extend(v for v in _values(ds, keyword) if v.strip())
    for keyword in DATE_ATTRIBUTES:
        for value in _values(ds, keyword):
            texts.extend(date_formats(value))
    return Identifiers(tuple(dict.fromkeys(t.strip() for t in texts if t.strip())))


def _values(ds: Dataset, keyword: str) -> list[str]:
    elem = ds.get(keyword)
    if elem is None or elem == "":
        return []
    if isinstance(elem, (list, tuple)) or type(elem).__name__ == "MultiValue":
        return [str(v) for v in elem]
    return [str(elem)]


def normalize(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", text.upper())


@dataclass(frozen=True)
class HeaderChange:
    keyword: str
    tag: str
    action: str


@dataclass
class HeaderResult:
    changes: list[HeaderChange] = field(default_factory=list)
    private_removed: int = 0
    private_kept: int = 0
    """Safe private attributes retained (Retain Safe Private, Table E.3.10-1)."""
    uid_map: dict[str, str] = field(default_factory=dict)
    dates_shifted_by_days: int | None = None
    pseudonym: str = ""
    patient_key: str = ""
    originals: dict[str, str] = field(default_factory=dict)
    """Original identifiers kept only for the encrypted lookup (never logged or reported)."""


DUMMIES: dict[str, object] = {
    "PN": "ANONYMIZED", "LO": "ANONYMIZED", "SH": "ANONYMIZED", "ST": "ANONYMIZED",
    "LT": "ANONYMIZED", "UT": "ANONYMIZED", "UC": "ANONYMIZED", "CS": "ANONYMIZED",
    "DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000Y", "IS": "0",
    "DS": "0", "AE": "ANONYMIZED", "UR": "", "US": 0, "SS": 0, "UL": 0, "SL": 0, "FL": 0.0,
    "FD": 0.0,
}
"""Replacement values consistent with each VR for action D (E.1.1)."""


class HeaderCleaner:
    """Applies the profile to one dataset in place (file meta included)."""

    def __init__(self, options: ProfileOptions, pseudonyms: Pseudonymizer,
                 identifiers: Identifiers) -> None:
        self.options = options
        self.pseudonyms = pseudonyms
        self.identifiers = identifiers
        self.table = action_table()
        self.result = HeaderResult()
        self._scrub = _scrubber(identifiers.texts)

    def apply(self, ds: Dataset) -> HeaderResult:
        key = self.pseudonyms.patient_key(
            str(ds.get("PatientID", "")), str(ds.get("IssuerOfPatientID", "")),
            str(ds.get("PatientName", "")), str(ds.get("PatientBirthDate", "")))
        self.key = key
        self.shift = self.pseudonyms.date_shift(key)
        self.result.patient_key = self.pseudonyms.code("key", key, 16)
        self.result.pseudonym = self.pseudonyms.patient_name(key)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"):
            if keyword in ds:
                self.result.originals[keyword] = str(ds.get(keyword))
        if self.options.retain_modified_dates:
            self.result.dates_shifted_by_days = self.shift.days
        self._dataset(ds)
        if "SOPInstanceUID" in ds:  # the file meta names the instance too
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        self._mark(ds)
        return self.result

    def _dataset(self, ds: Dataset) -> None:
        declared = declared_blocks(ds) if self.options.retain_safe_private else {}
        for elem in list(ds):
            self._element(ds, elem, declared)
        if self.options.retain_safe_private:
            _drop_unused_creators(ds)
        _prune_characteristics(ds)

    def _element(self, ds: Dataset, elem: DataElement,
                 declared: dict[tuple[int, str], BlockDeclaration] | None = None) -> None:
        tag = Tag(elem.tag)
        if tag.group == 0x7FE0 and tag.element == 0x0010:
            return  # Pixel Data: cleaned by the pixel stage (Clean Pixel Data Option)
        row = self.table.row(tag)
        if row is None:
            if elem.VR == "SQ":
                for item in elem.value:
                    self._dataset(item)
            return
        if tag.is_private:
            if self.options.retain_safe_private and is_safe_private(ds, tag, declared):
                if not 0x10 <= tag.element <= 0xFF:
                    self.result.private_kept += 1
                if elem.VR == "SQ":  # standard attributes nested in it get their actions
                    for item in elem.value:
                        self._dataset(item)
                return
            del ds[tag]
            self.result.private_removed += 1
            return
        action = resolve(row.action(self.options), elem.VR)
        if action is Action.CLEAN and row.options.get("clean_graphics") and elem.VR != "SQ":
            action = Action.REMOVE  # overlay and curve data: graphics cannot be cleaned here
        label = self._apply(ds, elem, action)
        self.result.changes.append(HeaderChange(elem.keyword or str(tag), _tag_text(tag),
                                                label))

    def _apply(self, ds: Dataset, elem: DataElement, action: Action) -> str:
        """Carry out one action; returns what was done, for the report."""
        keyword = elem.keyword
        if keyword in PSEUDONYMS and action in (Action.EMPTY, Action.DUMMY):
            elem.value = PSEUDONYMS[keyword](self)
            return "pseudonym"
        self._carry_out(ds, elem, action)
        return action.name.lower()

    def _carry_out(self, ds: Dataset, elem: DataElement, action: Action) -> None:
        if action is Action.REMOVE:
            del ds[elem.tag]
        elif action is Action.EMPTY:
            elem.value = Sequence() if elem.VR == "SQ" else None
        elif action is Action.DUMMY:
            if elem.VR == "SQ":
                for item in elem.value:
                    self._dataset(item)
            elif elem.VR == "UI":
                elem.value = self._uid(elem.value)
            else:
                elem.value = DUMMIES.get(elem.VR)
        elif action is Action.NEW_UID:
            if elem.VR == "SQ":
                for item in elem.value:
                    self._dataset(item)
            else:
                elem.value = self._uid(elem.value)
        elif action is Action.CLEAN:
            self._clean(ds, elem)
        elif elem.VR == "SQ":  # KEEP: nested attributes still get their own action
            for item in elem.value:
                self._dataset(item)

    def _uid(self, value: object) -> object:
        if value is None or value == "":
            return value
        if isinstance(value, str):
            new = self.pseudonyms.uid(value)
            self.result.uid_map[value] = new
            return new
        return [self._uid(v) for v in value]  # type: ignore[attr-defined]

    def _clean(self, ds: Dataset, elem: DataElement) -> None:
        """C (E.1.1): replace with values of similar meaning that hold no identifying
        information. Dates move by the patient's offset (Modified Dates), text loses every
        identifier of the patient, sequences are cleaned item by item."""
        if elem.VR == "SQ":
            for item in elem.value:
                self._dataset(item)
        elif elem.VR == "DA":
            elem.value = _map_values(elem.value, lambda v: shift_date(v, self.shift))
        elif elem.VR == "DT":
            elem.value = _map_values(elem.value, lambda v: shift_datetime(v, self.shift))
        elif elem.VR == "TM":
            return  # a time of day does not identify once the date has moved
        elif elem.VR in ("LO", "SH", "ST", "LT", "UT", "UC", "PN", "CS"):
            elem.value = _map_values(elem.value, self._scrub)
        elif elem.VR == "UI":
            elem.value = self._uid(elem.value)

    def _mark(self, ds: Dataset) -> None:
        """PS3.15 E.1.1 (2)-(4): say that and how the identity was removed."""
        ds.PatientIdentityRemoved = "YES"
        methods = [f"vid2dcm {__version__}", BASIC_CODE[1]]
        codes = [BASIC_CODE, *(OPTION_CODES[name] for name in self.options.selected)]
        methods.extend(name for _, name in codes[1:])
        ds.DeidentificationMethod = [m[:64] for m in methods]
        items = []
        for value, meaning in codes:
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        if self.options.retain_full_dates:
            ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
        elif self.options.retain_modified_dates:
            ds.LongitudinalTemporalInformationModified = "MODIFIED"
        else:
            ds.LongitudinalTemporalInformationModified = "REMOVED"


PSEUDONYMS: dict[str, Callable[[HeaderCleaner], str]] = {
    "PatientName": lambda c: c.pseudonyms.patient_name(c.key),
    "PatientID": lambda c: c.pseudonyms.patient_id(c.key),
}
"""Z/D attributes replaced by consistent pseudonyms rather than emptied: the same patient
gets the same name and ID across runs with the same secret (E.1.1 allows a dummy for Z)."""


def _drop_unused_creators(ds: Dataset) -> None:
    """A Private Creator kept for a safe attribute that turned out not to be present."""
    used = {(Tag(e.tag).group, Tag(e.tag).element >> 8) for e in ds
            if Tag(e.tag).is_private and Tag(e.tag).element > 0xFF}
    for elem in list(ds):
        tag = Tag(elem.tag)
        if tag.is_private and 0x10 <= tag.element <= 0xFF and (tag.group,
                                                               tag.element) not in used:
            del ds[tag]


def _prune_characteristics(ds: Dataset) -> None:
    """Keep the Private Data Element Characteristics Sequence true to what remains: an item
    whose block (group + Private Creator) is gone goes, its De-identification Action
    Sequence (0008,0305) goes (the identifying elements it names were removed, not acted on),
    and the sequence goes when no item is left (PS3.3 C.12.1.1.7)."""
    elem = ds.get(PRIVATE_CHARACTERISTICS)
    if elem is None or elem.VR != "SQ":
        return
    present = {(Tag(e.tag).group, str(e.value).strip()) for e in ds
               if Tag(e.tag).is_private and 0x10 <= Tag(e.tag).element <= 0xFF}
    kept = []
    for item in elem.value or []:
        if _block_reference(item) not in present:
            continue
        if 0x00080305 in item:
            del item[0x00080305]
        kept.append(item)
    if kept:
        elem.value = Sequence(kept)
    else:
        del ds[PRIVATE_CHARACTERISTICS]


def _scrubber(texts: Iterable[str]) -> Callable[[str], str]:
    parts = sorted({t for t in texts if len(t) >= 2}, key=len, reverse=True)
    if not parts:
        return lambda value: value
    pattern = re.compile("|".join(re.escape(p) for p in parts), re.IGNORECASE)
    return lambda value: pattern.sub("***", value)


def _map_values(value: object, change: Callable[[str], str]) -> object:
    if value is None or value == "":
        return value
    if isinstance(value, str):
        return change(value)
    return [change(str(v)) for v in value]  # type: ignore[attr-defined]


def _tag_text(tag: BaseTag) -> str:
    return f"({tag.group:04X},{tag.element:04X})"
