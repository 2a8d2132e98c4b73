"""The schema of the last release before migrations (store.SCHEMA + ADDED_COLUMNS of that
release), reached from any earlier data folder.

An empty database gets every table. A data folder made before Alembic keeps its rows: missing
tables are created and missing columns added with their defaults (a release whose uploads had
5 columns, whose jobs had no attempts/owner/ward, whose audit had no role/client)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Text, Float, Integer = sa.Text, sa.Float, sa.Integer


def _c(name: str, kind: Callable[[], sa.types.TypeEngine[Any]], nullable: bool = True,
       default: str | None = None, key: bool = False) -> Callable[[], sa.Column[Any]]:
    return lambda: sa.Column(name, kind(), nullable=nullable and not key, primary_key=key,
                             server_default=sa.text(default) if default is not None else None)


TABLES: dict[str, tuple[Callable[[], sa.Column[Any]], ...]] = {
    "uploads": (_c("id", Text, key=True), _c("name", Text, False), _c("path", Text, False),
                _c("size", Integer, False), _c("created", Float, False), _c("problem", Text),
                _c("owner", Text, False, "''")),
    "audit": (_c("at", Float, False), _c("who", Text, False), _c("action", Text, False),
              _c("job", Text), _c("upload", Text), _c("study", Text),
              _c("role", Text, False, "''"), _c("client", Text, False, "''")),
    "jobs": (_c("id", Text, key=True), _c("upload_id", Text, False), _c("status", Text, False),
             _c("progress", Float, False), _c("request", Text, False), _c("result", Text),
             _c("error", Text), _c("created", Float, False), _c("started", Float),
             _c("finished", Float), _c("attempts", Integer, False, "0"),
             _c("failure_kind", Text), _c("owner", Text, False, "''"),
             _c("ward", Text, False, "''")),
    "users": (_c("name", Text, key=True), _c("role", Text, False),
              _c("password_hash", Text, False), _c("disabled", Integer, False, "0"),
              _c("created", Float, False), _c("ward", Text, False, "''")),
    "sessions": (_c("digest", Text, key=True), _c("user", Text, False),
                 _c("created", Float, False), _c("seen", Float, False)),
    "tokens": (_c("id", Text, key=True), _c("sha256", Text, False), _c("name", Text, False),
               _c("role", Text, False), _c("scopes", Text, False), _c("expires", Float),
               _c("revoked", Integer, False, "0"), _c("created", Float, False)),
    "outbox": (_c("job", Text, key=True), _c("destination", Text, key=True),
               _c("state", Text, False), _c("attempts", Integer, False),
               _c("first_try", Float, False), _c("next_try", Float, False), _c("error", Text),
               _c("receipts", Text)),
    "sign_ons": (_c("state", Text, key=True), _c("nonce", Text, False),
                 _c("verifier", Text, False), _c("created", Float, False)),
    "login_failures": (_c("at", Float, False), _c("user", Text, False),
                       _c("client", Text, False)),
}


def upgrade() -> None:
    bind = op.get_bind()
    have = set(sa.inspect(bind).get_table_names())
    for table, columns in TABLES.items():
        if table not in have:
            extra = (sa.UniqueConstraint("sha256"),) if table == "tokens" else ()
            op.create_table(table, *(make() for make in columns), *extra)
            continue
        present = {c["name"] for c in sa.inspect(bind).get_columns(table)}
        for make in columns:
            column = make()
            if column.name not in present:
                op.add_column(table, column)


def downgrade() -> None:
    raise NotImplementedError("restore the backup taken before the upgrade")
