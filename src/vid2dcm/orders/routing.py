"""Routing rules: which destinations a study goes to, and why.

A small table in the settings (`[[routing.rules]]`), validated when loaded: each rule names
the destinations it sends to and the conditions that must all hold (procedure, modality,
department/ward, ordering service, size). Every matching rule adds its destinations in table
order; a rule with `final = true` ends the evaluation when it matches; if no rule matches, the
`default` destinations are used. Pure: facts in, a decision with one reason per destination
out ("sent to A because rule 'endoscopy' matched modality ES").

    [routing]
    default = ["pacs"]
    [[routing.rules]]
    name = "endoscopy"
    modality = ["ES"]
    destinations = ["pacs", "research"]
    [[routing.rules]]
    name = "big video"
    min_size = "2 GB"
    destinations = ["archive"]
    final = true
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vid2dcm.core.errors import UsageError
from vid2dcm.orders.order import Order

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(value: int | str) -> int:
    """Bytes from 123, "500 MB", "2 GB", "1.5 GiB" (decimal and binary units)."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    unit = (match[2] or "").upper() if match else ""
    if unit and not unit.endswith("B"):
        unit += "B"
    if not match or unit not in _UNITS:
        raise ValueError(f"{value!r} is not a size (e.g. 500 MB, 2 GB)")
    return int(float(match[1]) * _UNITS[unit])


class RouteRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    destinations: tuple[str, ...] = Field(min_length=1)
    procedure: tuple[str, ...] = ()
    """Procedure codes or names (OBR-4 / ServiceRequest.code), matched case-insensitively."""
    modality: tuple[str, ...] = ()
    department: tuple[str, ...] = ()
    ordering_service: tuple[str, ...] = ()
    min_size: int | None = Field(default=None, ge=0)
    max_size: int | None = Field(default=None, ge=0)
    final: bool = False

    @field_validator("min_size", "max_size", mode="before")
    @classmethod
    def _size(cls, value: object) -> object:
        return parse_size(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _sane(self) -> RouteRule:
        if not any((self.procedure, self.modality, self.department, self.ordering_service,
                    self.min_size is not None, self.max_size is not None)):
            raise ValueError("a rule needs at least one condition (procedure, modality, "
                             "department, ordering_service, min_size, max_size); use "
                             "`default` for everything else")
        if self.min_size is not None and self.max_size is not None \
                and self.min_size > self.max_size:
            raise ValueError("min_size is larger than max_size")
        return self


class RoutingTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: tuple[str, ...] = ()
    rules: tuple[RouteRule, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> RoutingTable:
        names = [r.name for r in self.rules]
        doubles = sorted({n for n in names if names.count(n) > 1})
        if doubles:
            raise ValueError(f"rule names must be unique: {', '.join(doubles)}")
        return self

    def check_destinations(self, known: Iterable[str]) -> None:
        """UsageError naming the first rule that sends to a destination not configured."""
        names = set(known)
        for rule in self.rules:
            for dest in rule.destinations:
                if dest not in names:
                    raise UsageError(f"routing rule {rule.name!r}: unknown destination "
                                     f"{dest!r}")
        for dest in self.default:
            if dest not in names:
                raise UsageError(f"routing default: unknown destination {dest!r}")


@dataclass(frozen=True)
class Facts:
    """What a routing decision may look at."""

    procedure: tuple[str, ...] = ()
    """Code and name of the procedure."""
    modality: str = ""
    department: str = ""
    ordering_service: str = ""
    size_bytes: int = 0

    @classmethod
    def of(cls, order: Order | None, size_bytes: int, modality: str = "") -> Facts:
        if order is None:
            return cls(modality=modality, size_bytes=size_bytes)
        proc = order.procedure
        names = (proc.value, proc.meaning) if proc else ()
        desc = order.metadata.requested_procedure_description
        return cls(tuple(n for n in (*names, desc) if n), modality or order.modality,
                   order.department, order.ordering_service, size_bytes)


@dataclass(frozen=True)
class Choice:
    destination: str
    rule: str
    """The rule's name, or "default"."""
    because: str

    def explain(self) -> str:
        return f"sent to {self.destination} because {self.because}"


@dataclass(frozen=True)
class Decision:
    choices: tuple[Choice, ...]

    @property
    def destinations(self) -> tuple[str, ...]:
        return tuple(c.destination for c in self.choices)

    def explain(self) -> list[str]:
        return [c.explain() for c in self.choices]


def _one_of(wanted: tuple[str, ...], values: tuple[str, ...]) -> str | None:
    lowered = {v.casefold(): v for v in values if v}
    for w in wanted:
        if w.casefold() in lowered:
            return lowered[w.casefold()]
    return None


def _matches(rule: RouteRule, facts: Facts) -> list[str] | None:
    """The reasons the rule holds, or None if one condition fails."""
    why: list[str] = []
    for label, wanted, values in (("procedure", rule.procedure, facts.procedure),
                                  ("modality", rule.modality, (facts.modality,)),
                                  ("department", rule.department, (facts.department,)),
                                  ("ordering service", rule.ordering_service,
                                   (facts.ordering_service,))):
        if wanted:
            hit = _one_of(wanted, values)
            if hit is None:
                return None
            why.append(f"{label} {hit}")
    if rule.min_size is not None:
        if facts.size_bytes < rule.min_size:
            return None
        why.append(f"size {facts.size_bytes} B >= {rule.min_size} B")
    if rule.max_size is not None:
        if facts.size_bytes > rule.max_size:
            return None
        why.append(f"size {facts.size_bytes} B <= {rule.max_size} B")
    return why


def route(table: RoutingTable, facts: Facts) -> Decision:
    """Destinations for these facts, each with the rule that chose it and why."""
    choices: list[Choice] = []
    seen: set[str] = set()
    for rule in table.rules:
        why = _matches(rule, facts)
        if why is None:
            continue
        for dest in rule.destinations:
            if dest not in seen:
                seen.add(dest)
                choices.append(Choice(dest, rule.name,
                                      f"rule {rule.name!r} matched {' and '.join(why)}"))
        if rule.final:
            break
    if not choices:
        choices = [Choice(d, "default", "no routing rule matched (default)")
                   for d in table.default]
    return Decision(tuple(choices))


def load_routing(data: dict[str, Any], known: Iterable[str] | None = None,
                 where: str = "settings") -> RoutingTable:
    """The [routing] table of parsed settings; UsageError with one clear line when wrong."""
    try:
        table = RoutingTable.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        if first["loc"] and first["loc"][0] == "rules" and len(first["loc"]) > 1:
            index = first["loc"][1]
            rules = data.get("rules", [])
            if isinstance(index, int) and index < len(rules) and isinstance(rules[index], dict):
                loc = f"rule {rules[index].get('name', index)!r}" + (
                    "." + ".".join(str(p) for p in first["loc"][2:]) if first["loc"][2:]
                    else "")
        raise UsageError(f"{where}: routing: {loc}: {first['msg']}") from exc
    if known is not None:
        table.check_destinations(known)
    return table


def load_routing_file(path: Path, known: Iterable[str] | None = None) -> RoutingTable:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UsageError(f"config file {path} does not exist") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from exc
    routing = data.get("routing", {})
    if not isinstance(routing, dict):
        raise UsageError(f"config file {path}: [routing] must be a table")
    return load_routing(routing, known, str(path))
