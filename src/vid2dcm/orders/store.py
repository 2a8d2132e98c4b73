"""Orders kept in one small SQLite table in the data folder.

The interface is what the gateway needs and nothing more: put/replace orders in one
transaction (a merge touches several, all or none), find one by placer number or accession, list
a day's open orders the way a worklist query would, and the open orders of a patient (ADT
updates and merges). Each row holds the Order as JSON plus the indexed keys.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

from vid2dcm.orders.order import Order, OrderStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    placer TEXT PRIMARY KEY,
    accession TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    issuer TEXT NOT NULL,
    status TEXT NOT NULL,
    scheduled TEXT,
    updated TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_accession ON orders (accession);
CREATE INDEX IF NOT EXISTS orders_patient ON orders (patient_id, issuer);
"""


class OrderStore:
    """Thread-safe (one lock, short transactions): the MLLP listener, the FHIR poller and the
    gateway may share one store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.update_lock = threading.RLock()
        """Held by writers that read, decide and write (the HL7 inbox), so two messages on two
        connections cannot both change the same order from the same old state. One process
        writes a store: SQLite alone does not order such read-modify-writes across processes.
        """
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    def put(self, *orders: Order) -> None:
        """Insert or replace, all in one transaction."""
        self.put_all(orders)

    def put_all(self, orders: Iterable[Order]) -> None:
        now = datetime.now(UTC)
        rows = []
        for order in orders:
            stamped = order.model_copy(update={"updated": now})
            rows.append((stamped.placer_order_number, stamped.accession_number,
                         stamped.patient_id, stamped.patient_id_issuer, stamped.status.value,
                         stamped.scheduled_start.isoformat() if stamped.scheduled_start else None,
                         now.isoformat(), stamped.model_dump_json()))
        with self._lock, self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def get(self, placer_order_number: str) -> Order | None:
        return self._one("placer = ?", (placer_order_number,))

    def find_by_accession(self, accession: str) -> Order | None:
        """The order with this accession number (the newest if a HIS reused one)."""
        return self._one("accession = ?", (accession,)) if accession else None

    def open_for_patient(self, patient_id: str, issuer: str = "") -> list[Order]:
        """Open orders of a patient; an empty issuer matches any (a HIS that sends none)."""
        where = "patient_id = ? AND status IN (?, ?)"
        args: tuple[str, ...] = (patient_id, OrderStatus.SCHEDULED.value,
                                 OrderStatus.IN_PROGRESS.value)
        if issuer:
            where += " AND issuer IN (?, '')"
            args += (issuer,)
        return self._many(where, args)

    def for_day(self, day: date, modality: str | None = None) -> list[Order]:
        """Open orders scheduled on `day` (like a worklist query on Scheduled Procedure Step
        Start Date), plus open orders with no schedule at all, scheduled first by time."""
        orders = [o for o in self._many("status IN (?, ?)", (OrderStatus.SCHEDULED.value,
                                                             OrderStatus.IN_PROGRESS.value))
                  if o.scheduled_start is None or o.scheduled_on(day)]
        if modality:
            orders = [o for o in orders if o.modality in ("", modality)]
        return sorted(orders, key=lambda o: (o.scheduled_start is None,
                                             o.scheduled_start or datetime.min,
                                             o.placer_order_number))

    def all(self) -> list[Order]:
        return self._many("1 = 1", ())

    def _one(self, where: str, args: tuple[str, ...]) -> Order | None:
        found = self._many(where + " ORDER BY updated DESC LIMIT 1", args)
        return found[0] if found else None

    def _many(self, where: str, args: tuple[str, ...]) -> list[Order]:
        with self._lock, self._connect() as db:
            rows = db.execute(f"SELECT body FROM orders WHERE {where}", args).fetchall()
        return [Order.model_validate_json(body) for (body,) in rows]
