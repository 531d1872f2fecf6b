"""Alembic environment: runs against the engine the manager hands over (see ``db.migrate``)."""

from __future__ import annotations

from alembic import context

from farmgui.core.models import Base

config = context.config
engine = config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
