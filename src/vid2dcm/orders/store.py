"""Orders kept in one small table: a SQLite file of their own, or the gateway's shared database.

The interface is what the gateway needs and nothing more: put/replace orders in one
transaction (a merge touches several, all or none), find one by placer number or accession, list
a day's open orders the way a worklist query would, and the open orders of a patient (ADT
updates and merges). Each row holds the Order as JSON plus the indexed keys.

At rest the order is patient data (name, ID, birth date). Given a `Sealing` (the gateway passes
its AES-GCM sealer: apps/gateway/sealing.py), the body is sealed with the placer order number
as associated data, and the searchable keys that identify the patient or the study (patient ID,
accession number) are stored as keyed digests: found by exact match, unreadable without the
key. Without one (stand-alone use, tests) rows are plain, as before. Rows written plain and
later opened with a sealing are sealed in place on open.

SQL through SQLAlchemy Core, so the same code runs on SQLite and PostgreSQL; this package does
not know the gateway: it is handed a path, or an Engine on the gateway's database (where the
gateway's migrations made the table)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import (
    Column,
    Engine,
    Index,
    MetaData,
    Table,
    Text,
    create_engine,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateIndex, CreateTable

from vid2dcm.orders.order import Order, OrderStatus


class Sealing(Protocol):
    """How patient data is kept at rest: seal/open a value bound to its row, and a keyed digest
    for values that must be searched by exact match."""

    def seal(self, plain: str, row: str) -> str: ...

    def open(self, value: str, row: str) -> str: ...

    def digest(self, value: str) -> str: ...


class PlainText:
    """No sealing: values as they are (stand-alone use of the library, tests)."""

    def seal(self, plain: str, row: str) -> str:
        return plain

    def open(self, value: str, row: str) -> str:
        return value

    def digest(self, value: str) -> str:
        return value


metadata = MetaData()
orders_table = Table(
    "orders", metadata,
    Column("placer", Text, primary_key=True),
    Column("accession", Text, nullable=False),
    Column("patient_id", Text, nullable=False),
    Column("issuer", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("scheduled", Text),
    Column("updated", Text, nullable=False),
    Column("body", Text, nullable=False),
    Index("orders_accession", "accession"),
    Index("orders_patient", "patient_id", "issuer"),
)
OPEN = (OrderStatus.SCHEDULED.value, OrderStatus.IN_PROGRESS.value)

_ENGINES: dict[tuple[int, str], Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _sqlite_engine(path: Path) -> Engine:
    """One engine per file per process; a connection per use (no pool crosses a fork)."""
    key = (os.getpid(), str(path))
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = create_engine(f"sqlite:///{path}", poolclass=NullPool,
                                          connect_args={"timeout": 30}, hide_parameters=True)
        return _ENGINES[key]


class OrderStore:
    """Thread-safe (one lock, short transactions): the MLLP listener, the FHIR poller and the
    gateway may share one store."""

    def __init__(self, where: Path | Engine, sealing: Sealing | None = None) -> None:
        self.path: Path | None = where if isinstance(where, Path) else None
        if isinstance(where, Path):
            where.parent.mkdir(parents=True, exist_ok=True)
            self._engine = _sqlite_engine(where)
        else:
            self._engine = where
        self._sealing: Sealing = sealing or PlainText()
        self._lock = threading.Lock()
        self.update_lock = threading.RLock()
        """Held by writers that read, decide and write (the HL7 inbox), so two messages on two
        connections cannot both change the same order from the same old state. One process
        writes a store: the database alone does not order such read-modify-writes across
        processes."""
        self._create()
        if sealing is not None:
            self._seal_plain_rows()

    def _create(self) -> None:
        with self._engine.connect() as db:
            if db.dialect.has_table(db, "orders"):
                return
        try:
            with self._engine.begin() as db:
                db.execute(CreateTable(orders_table, if_not_exists=True))
                for index in orders_table.indexes:
                    db.execute(CreateIndex(index, if_not_exists=True))
        except OperationalError:  # made at the same moment by another process
            with self._engine.connect() as db:
                if not db.dialect.has_table(db, "orders"):
                    raise

    def _seal_plain_rows(self) -> None:
        """Rows written without sealing (an earlier release, or the plain library) are sealed
        and re-keyed now, keeping their update time."""
        with self._lock, self._engine.connect() as db:
            plain = [(row[0], row[1]) for row in db.execute(
                select(orders_table.c.body, orders_table.c.updated)
                .where(~orders_table.c.body.startswith("aesgcm:"))).all()]
        if plain:
            self._write([Order.model_validate_json(body) for body, _ in plain],
                        [updated for _, updated in plain])

    def put(self, *orders: Order) -> None:
        """Insert or replace, all in one transaction."""
        self.put_all(orders)

    def put_all(self, orders: Iterable[Order]) -> None:
        now = datetime.now(UTC)
        stamped = [o.model_copy(update={"updated": now}) for o in orders]
        self._write(stamped, [now.isoformat()] * len(stamped))

    def _write(self, orders: Sequence[Order], updated: Sequence[str]) -> None:
        rows = [{"placer": o.placer_order_number,
                 "accession": self._sealing.digest(o.accession_number),
                 "patient_id": self._sealing.digest(o.patient_id),
                 "issuer": o.patient_id_issuer, "status": o.status.value,
                 "scheduled": o.scheduled_start.isoformat() if o.scheduled_start else None,
                 "updated": when,
                 "body": self._sealing.seal(o.model_dump_json(), o.placer_order_number)}
                for o, when in zip(orders, updated, strict=True)]
        if not rows:
            return
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(orders_table)
        upsert = statement.on_conflict_do_update(index_elements=["placer"], set_={
            c.name: statement.excluded[c.name] for c in orders_table.columns
            if c.name != "placer"})
        with self._lock, self._engine.begin() as db:
            db.execute(upsert, rows)

    def get(self, placer_order_number: str) -> Order | None:
        return self._one(orders_table.c.placer == placer_order_number)

    def find_by_accession(self, accession: str) -> Order | None:
        """The order with this accession number (the newest if a HIS reused one)."""
        if not accession:
            return None
        return self._one(orders_table.c.accession == self._sealing.digest(accession))

    def open_for_patient(self, patient_id: str, issuer: str = "") -> list[Order]:
        """Open orders of a patient; an empty issuer matches any (a HIS that sends none)."""
        t = orders_table
        where = [t.c.patient_id == self._sealing.digest(patient_id), t.c.status.in_(OPEN)]
        if issuer:
            where.append(t.c.issuer.in_((issuer, "")))
        return self._many(*where)

    def for_day(self, day: date, modality: str | None = None) -> list[Order]:
        """Open orders scheduled on `day` (like a worklist query on Scheduled Procedure Step
        Start Date), plus open orders with no schedule at all, scheduled first by time."""
        orders = [o for o in self._many(orders_table.c.status.in_(OPEN))
                  if o.scheduled_start is None or o.scheduled_on(day)]
        if modality:
            orders = [o for o in orders if o.modality in ("", modality)]
        return sorted(orders, key=lambda o: (o.scheduled_start is None,
                                             o.scheduled_start or datetime.min,
                                             o.placer_order_number))

    def all(self) -> list[Order]:
        return self._many()

    def _one(self, *where: Any) -> Order | None:
        found = self._many(*where, newest_only=True)
        return found[0] if found else None

    def _many(self, *where: Any, newest_only: bool = False) -> list[Order]:
        query = select(orders_table.c.placer, orders_table.c.body).where(*where)
        if newest_only:
            query = query.order_by(orders_table.c.updated.desc()).limit(1)
        with self._lock, self._engine.connect() as db:
            rows = db.execute(query).all()
        return [Order.model_validate_json(self._sealing.open(body, placer))
                for placer, body in rows]
