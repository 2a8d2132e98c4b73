"""Routing rules: every condition, final rules, the default, explanations and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from vid2dcm.core.errors import UsageError
from vid2dcm.core.metadata import CodedConcept, Metadata
from vid2dcm.orders.order import Order
from vid2dcm.orders.routing import Facts, load_routing, load_routing_file, parse_size, route

SETTINGS = """
[routing]
default = ["pacs"]

[[routing.rules]]
name = "huge video"
min_size = "2 GB"
destinations = ["archive"]
final = true

[[routing.rules]]
name = "endoscopy"
procedure = ["EGD", "Colonoscopy"]
destinations = ["pacs", "research"]

[[routing.rules]]
name = "operating theatre"
modality = ["XC"]
department = ["OR1", "OR2"]
destinations = ["surgery-pacs"]

[[routing.rules]]
name = "dermatology"
ordering_service = ["DERM"]
max_size = "50 MB"
destinations = ["teledermatology"]
"""

KNOWN = ["pacs", "research", "archive", "surgery-pacs", "teledermatology"]


@pytest.fixture
def table(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "settings.toml"
    path.write_text(SETTINGS)
    return load_routing_file(path, KNOWN)


def order(code: str = "", modality: str = "", department: str = "", service: str = "") -> Order:
    return Order(placer_order_number="P1", metadata=Metadata(patient_id="X"),
                 procedure=CodedConcept(value=code, meaning=code, scheme="L") if code else None,
                 modality=modality, department=department, ordering_service=service)


def test_procedure_rule(table) -> None:  # type: ignore[no-untyped-def]
    decision = route(table, Facts.of(order("egd", "ES"), 10_000_000))
    assert decision.destinations == ("pacs", "research")
    assert decision.explain()[1] == "sent to research because rule 'endoscopy' matched " \
                                    "procedure egd"


def test_modality_and_department_must_both_hold(table) -> None:  # type: ignore[no-untyped-def]
    assert route(table, Facts.of(order(modality="XC", department="OR2"), 1)).destinations == (
        "surgery-pacs",)
    decision = route(table, Facts.of(order(modality="XC", department="ENDO"), 1))
    assert decision.destinations == ("pacs",)
    assert decision.choices[0].rule == "default"
    assert "no routing rule matched" in decision.explain()[0]


def test_ordering_service_with_size_limit(table) -> None:  # type: ignore[no-untyped-def]
    small = route(table, Facts.of(order(service="DERM"), 49_000_000))
    assert small.destinations == ("teledermatology",)
    assert "ordering service DERM and size 49000000 B <= 50000000 B" in small.explain()[0]
    big = route(table, Facts.of(order(service="DERM"), 51_000_000))
    assert big.destinations == ("pacs",)


def test_size_rule_is_final(table) -> None:  # type: ignore[no-untyped-def]
    decision = route(table, Facts.of(order("EGD"), 3 * 10**9))
    assert decision.destinations == ("archive",), "final: endoscopy is not added"
    assert "size 3000000000 B >= 2000000000 B" in decision.explain()[0]


def test_no_order_uses_facts_alone(table) -> None:  # type: ignore[no-untyped-def]
    assert route(table, Facts.of(None, 5, modality="XC")).destinations == ("pacs",)


@pytest.mark.parametrize(("data", "message"), [
    ({"rules": [{"name": "x", "destinations": ["pacs"]}]}, "at least one condition"),
    ({"rules": [{"name": "x", "destinations": ["pacs"], "min_size": "2 GB",
                 "max_size": "1 GB"}]}, "min_size is larger"),
    ({"rules": [{"name": "x", "destinations": ["nowhere"], "modality": ["XC"]}]},
     "unknown destination 'nowhere'"),
    ({"rules": [{"name": "x", "destinations": ["pacs"], "modality": ["XC"]},
                {"name": "x", "destinations": ["pacs"], "modality": ["ES"]}]}, "unique"),
    ({"rules": [{"name": "x", "destinations": ["pacs"], "min_size": "two gigs"}]},
     "is not a size"),
    ({"rules": [{"name": "x", "destinations": [], "modality": ["XC"]}]}, "rule 'x'"),
    ({"rules": [{"name": "x", "destinations": ["pacs"], "modalty": ["XC"]}]}, "modalty"),
    ({"default": ["gone"]}, "routing default: unknown destination"),
])
def test_bad_tables_are_one_clear_line(data: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        load_routing(data, KNOWN)
    assert "\n" not in str(info.value)


def test_sizes() -> None:
    assert parse_size("2 GB") == 2 * 10**9
    assert parse_size("1.5GiB") == int(1.5 * 2**30)
    assert parse_size("500 mb") == 500 * 10**6
    assert parse_size(123) == 123
    with pytest.raises(ValueError):
        parse_size("12 parsecs")
