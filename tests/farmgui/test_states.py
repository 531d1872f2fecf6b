"""One test per transition of the stage machine, allowed and forbidden."""

from __future__ import annotations

import itertools

import pytest

from farmgui.core.states import ALLOWED, IllegalTransition, Stage, can_transition, transition

ALLOWED_PAIRS = sorted((a, b) for a, targets in ALLOWED.items() for b in targets)
FORBIDDEN_PAIRS = sorted((a, b) for a, b in itertools.product(Stage, Stage) if b not in ALLOWED[a])


@pytest.mark.parametrize(("current", "target"), ALLOWED_PAIRS)
def test_allowed(current: Stage, target: Stage) -> None:
    assert transition(current, target) is target
    assert can_transition(current, target)


@pytest.mark.parametrize(("current", "target"), FORBIDDEN_PAIRS)
def test_forbidden(current: Stage, target: Stage) -> None:
    with pytest.raises(IllegalTransition, match=f"from {current.value} to {target.value}"):
        transition(current, target)


def test_the_happy_path() -> None:
    stage = Stage.UPLOADED
    for nxt in (Stage.QUEUED, Stage.RENDERING, Stage.MERGING, Stage.FINISHED):
        stage = transition(stage, nxt)
    assert stage is Stage.FINISHED


def test_terminal_stages_go_nowhere() -> None:
    assert ALLOWED[Stage.FINISHED] == frozenset()
    assert ALLOWED[Stage.CANCELLED] == frozenset()
    assert Stage.CANCELLED in ALLOWED[Stage.RENDERING]


def test_migrations_match_the_models(tmp_path: object) -> None:
    """The Alembic migrations build exactly the schema the models describe (no forgotten migration)."""
    from pathlib import Path

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from farmgui.core.db import make_engine, migrate
    from farmgui.core.models import Base

    engine = make_engine(f"sqlite:///{Path(str(tmp_path)) / 'm.sqlite3'}")
    migrate(engine)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()
