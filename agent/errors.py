"""The agent's exceptions: one hierarchy, with what went wrong as attributes.

A frame that fails is not an exception (it is a :class:`agent.session.FrameFailed` result: failing frames are
part of a render farm's normal day); these are for a session that cannot be used at all.
"""

from __future__ import annotations

from .output import Fault


class AgentError(Exception):
    """Base of every error the agent raises."""


class SessionError(AgentError):
    """A render session cannot do what was asked."""


class SessionStartError(SessionError):
    """Blender did not get as far as "ready": the file did not load, the GPU is missing, it crashed, ..."""

    def __init__(
        self, message: str, fault: Fault, log_tail: tuple[str, ...] = (), exit_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fault = fault
        self.log_tail = log_tail
        self.exit_code = exit_code

    def __str__(self) -> str:
        code = f", exit status {self.exit_code}" if self.exit_code is not None else ""
        return f"{self.message} ({self.fault}{code})"


class SessionClosedError(SessionError):
    """The session was closed, cancelled or its Blender died; start a new one."""


class TransferError(AgentError):
    """The task's file could not be fetched because the link or the manager failed (connection reset, timeout,
    a manager restarting): nothing is wrong with the file or the agent, so it is retried, never reported as a
    frame that failed (that would count toward taking the agent off the task)."""


__all__ = ["AgentError", "SessionClosedError", "SessionError", "SessionStartError", "TransferError"]
