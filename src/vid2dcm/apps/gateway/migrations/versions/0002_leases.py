"""Worker leases (issue 17): the worker running a job, until when its lease holds (renewed by
a heartbeat), and how often the job was taken over from a worker that died."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("worker", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("lease_until", sa.Float(), nullable=True))
    op.add_column("jobs", sa.Column("recoveries", sa.Integer(), nullable=False,
                                    server_default=sa.text("0")))
    op.create_index("jobs_status", "jobs", ["status"])


def downgrade() -> None:
    raise NotImplementedError("restore the backup taken before the upgrade")
