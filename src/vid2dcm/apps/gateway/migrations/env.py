"""Alembic environment of the job store: run by store.migrate() with the connection it holds
(and its lock); there is no alembic.ini. The revisions are written out by hand (no
autogenerate): each is the change from the release before, and revision 0001 also brings any
pre-Alembic data folder to the first migrated schema."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=False)
with context.begin_transaction():
    context.run_migrations()
