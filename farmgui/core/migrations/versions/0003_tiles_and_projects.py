"""tiled stills and zip projects

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 22:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("render_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tiles", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("tile_overlap", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("main_blend", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("render_tasks", schema=None) as batch_op:
        batch_op.drop_column("main_blend")
        batch_op.drop_column("tile_overlap")
        batch_op.drop_column("tiles")
