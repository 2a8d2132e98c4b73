"""De-identified exports (issue 16): one row per export of a job's instances to the research
destination, its delivery a parcel in the outbox keyed by the export id. A data folder made by
the release that introduced exports (before migrations) has the table already: kept as is."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "exports" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "exports",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("job", sa.Text(), nullable=False),
        sa.Column("profile", sa.Text(), nullable=False),
        sa.Column("destination", sa.Text(), nullable=False),
        sa.Column("who", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("finished", sa.Float()),
        sa.Column("error", sa.Text()),
        sa.Column("result", sa.Text()))


def downgrade() -> None:
    raise NotImplementedError("restore the backup taken before the upgrade")
