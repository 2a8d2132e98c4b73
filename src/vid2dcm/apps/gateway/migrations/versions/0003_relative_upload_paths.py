"""Upload paths relative to the data folder (issue 17): a gateway and workers on several
machines mount one shared data folder, maybe at different paths, and must agree on where an
upload is. Absolute paths inside this data folder become relative; others stay as they are
(store.Store resolves both)."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    data_dir = context.config.attributes.get("data_dir")
    if data_dir is None:
        return
    folder = Path(os.path.abspath(data_dir))
    uploads = sa.table("uploads", sa.column("id", sa.Text()), sa.column("path", sa.Text()))
    bind = op.get_bind()
    for upload_id, stored in bind.execute(sa.select(uploads.c.id, uploads.c.path)).all():
        path = Path(stored)
        if not path.is_absolute():
            continue
        try:
            relative = Path(os.path.abspath(path)).relative_to(folder).as_posix()
        except ValueError:
            continue
        bind.execute(sa.update(uploads).where(uploads.c.id == upload_id)
                     .values(path=relative))


def downgrade() -> None:
    raise NotImplementedError("restore the backup taken before the upgrade")
