"""Orders in the shared database (issue 17): with PostgreSQL the HL7/FHIR orders live beside
the jobs (orders/store.py's table, body sealed, patient ID and accession as keyed digests), so
every machine sees the same orders. With SQLite they stay in data_dir/orders.sqlite, which
orders/store.py makes itself: nothing to do here."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_table(
        "orders",
        sa.Column("placer", sa.Text(), primary_key=True),
        sa.Column("accession", sa.Text(), nullable=False),
        sa.Column("patient_id", sa.Text(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("scheduled", sa.Text()),
        sa.Column("updated", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False))
    op.create_index("orders_accession", "orders", ["accession"])
    op.create_index("orders_patient", "orders", ["patient_id", "issuer"])


def downgrade() -> None:
    raise NotImplementedError("restore the backup taken before the upgrade")
