"""The one contract between the manager and its agents: versioned, standard library only.

Both sides import this module; nothing else about the wire is spelled anywhere else.

How a farm talks (the agent pulls work, so a restarted manager or a flaky link costs nothing but
a retry):

1. **Discovery.** Each agent advertises :data:`SERVICE_TYPE` over zeroconf with the TXT keys in
   :class:`TxtKey`. The manager browses for it (or is given ``HOST:PORT``) and reads
   :data:`AGENT_INFO` to check the agent's identity before trusting anything the record said.
2. **Attach.** The manager calls :data:`AGENT_ATTACH` with its URL; the agent then works for that
   manager, and keeps its URL to come back to after either side restarts.
3. **Work.** The agent calls :data:`MANAGER_WORK` for a :class:`WorkAssignment` (a chunk of frames of
   one task), downloads the task's file by sha256 from :data:`MANAGER_FILE` unless it has it, renders
   the frames one by one in one Blender process kept alive for the task, uploads each frame to
   :data:`MANAGER_FRAME` the moment it is written (or reports :data:`MANAGER_FRAME_FAILED`), and asks
   for more before its queue runs dry.
4. **Heartbeat.** Every :data:`HEARTBEAT_INTERVAL_S` the agent posts a :class:`Heartbeat` with the
   progress of the frame it is on; the :class:`HeartbeatReply` tells it which attempts to abandon (a
   task cancelled, or a duplicate that another agent finished first). An agent silent for longer
   than the manager's timeout is lost and its unfinished frames go back to the queue.

Every request carries ``Authorization: Bearer <farm token>`` (:data:`AUTH_HEADER`).

A manager started with TLS serves its API (and so the endpoints above) over HTTPS only, with a self-signed
certificate that its agents pin at pairing (:class:`PairStart`, :class:`PairFinish`, ``agent/pairing.py``);
its attach URL then starts with ``https://``. The agents' own endpoints stay plain HTTP.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Self

PROTOCOL_VERSION = 2
"""Bumped on any incompatible change; both sides refuse a peer with another major version."""

SERVICE_TYPE = "_frameherd._tcp.local."
"""The zeroconf service type every agent advertises."""

AUTH_HEADER = "Authorization"
BEARER = "Bearer "

# -- the agent's endpoints ---------------------------------------------------------------------
AGENT_PREFIX = "/agent/v1"
AGENT_INFO = AGENT_PREFIX + "/info"
AGENT_ATTACH = AGENT_PREFIX + "/attach"
AGENT_DETACH = AGENT_PREFIX + "/detach"
AGENT_PAUSE = AGENT_PREFIX + "/pause"
AGENT_RESUME = AGENT_PREFIX + "/resume"
AGENT_PAIR_START = AGENT_PREFIX + "/pair/start"
"""No token needed: the one way in for a manager that does not have the agent's trust yet."""
AGENT_PAIR_FINISH = AGENT_PREFIX + "/pair/finish"
AGENT_UNPAIR = AGENT_PREFIX + "/unpair"

# -- the manager's agent-facing endpoints ------------------------------------------------------
MANAGER_AGENT_PREFIX = "/api/agent/v1"
MANAGER_HELLO = MANAGER_AGENT_PREFIX + "/hello"
MANAGER_HEARTBEAT = MANAGER_AGENT_PREFIX + "/heartbeat"
MANAGER_WORK = MANAGER_AGENT_PREFIX + "/work"
MANAGER_FILE = MANAGER_AGENT_PREFIX + "/files/{sha256}"
MANAGER_FRAME = MANAGER_AGENT_PREFIX + "/tasks/{task_id}/frames/{frame}"
MANAGER_FRAME_FAILED = MANAGER_AGENT_PREFIX + "/tasks/{task_id}/frames/{frame}/failed"

# Headers that travel with an uploaded frame (its body is the image file itself, streamed).
HEADER_AGENT_ID = "X-Frameherd-Agent"
HEADER_ATTEMPT = "X-Frameherd-Attempt"
HEADER_SHA256 = "X-Frameherd-Sha256"
HEADER_RENDER_SECONDS = "X-Frameherd-Render-Seconds"
HEADER_EXTENSION = "X-Frameherd-Extension"

HEARTBEAT_INTERVAL_S = 2.0
DEFAULT_AGENT_PORT = 8765
DEFAULT_MANAGER_PORT = 8700


class AgentState(StrEnum):
    IDLE = "idle"
    RENDERING = "rendering"
    PAUSED = "paused"


class TxtKey(StrEnum):
    """Keys of the zeroconf TXT record. Hints only: the manager checks identity over HTTPS/token."""

    AGENT_ID = "id"
    NAME = "name"
    PROTOCOL = "proto"
    BLENDERS = "blender"
    """Comma-separated ``major.minor`` versions the agent can run, e.g. ``3.4,5.0``."""
    CPUS = "cpus"
    GPUS = "gpus"
    """Comma-separated GPU render devices (``OPTIX:NVIDIA H200``), empty when none are known."""
    STATE = "state"
    PAIRED = "paired"
    """``1`` when the agent holds a farm token, ``0`` when it waits to be paired."""


class ProtocolError(ValueError):
    """A message that does not match this protocol (missing or mistyped field, wrong version)."""


def _check(cls: type[Any], data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ProtocolError(f"{cls.__name__}: expected a JSON object")
    names = {f.name for f in dataclasses.fields(cls)}
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing = required - data.keys()
    if missing:
        raise ProtocolError(f"{cls.__name__}: missing {sorted(missing)}")
    return {k: v for k, v in data.items() if k in names}  # unknown keys: a newer peer, ignored


class Message:
    """JSON (de)serialisation shared by the message dataclasses below."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload,no-any-return]

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        values = _check(cls, data)
        try:
            return cls._build(values)
        except (TypeError, ValueError, KeyError) as exc:
            raise ProtocolError(f"{cls.__name__}: {exc}") from exc

    @classmethod
    def _build(cls, values: dict[str, Any]) -> Self:
        return cls(**values)

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"{cls.__name__}: not JSON: {exc}") from exc


@dataclass(frozen=True)
class BlenderVersion(Message):
    """One Blender an agent can run."""

    version: str
    """``major.minor.patch`` as the install reports it."""
    kind: str
    """``executable`` or ``bpy``."""


@dataclass(frozen=True)
class AgentInfo(Message):
    """Who an agent is and what it can do (``GET /agent/v1/info`` and the hello to the manager)."""

    agent_id: str
    name: str
    host: str
    port: int
    protocol: int = PROTOCOL_VERSION
    blenders: list[BlenderVersion] = field(default_factory=list)
    cpus: int = 1
    gpus: list[str] = field(default_factory=list)
    state: AgentState = AgentState.IDLE
    paired: bool = False
    version: str = ""
    """Frameherd version of the agent."""

    @classmethod
    def _build(cls, values: dict[str, Any]) -> Self:
        values["blenders"] = [BlenderVersion.from_dict(b) for b in values.get("blenders", [])]
        values["state"] = AgentState(values.get("state", AgentState.IDLE))
        return cls(**values)


@dataclass(frozen=True)
class AttachRequest(Message):
    """Manager -> agent: work for me."""

    manager_url: str
    manager_id: str


@dataclass(frozen=True)
class PairStart(Message):
    """Manager -> unpaired agent: may I give you my farm's token?"""

    manager_id: str
    manager_nonce: str
    manager_cert_sha256: str = ""
    """A TLS manager: the SHA-256 (hex) of the certificate it will pin, which goes into the pairing code.
    Empty for a manager that serves plain HTTP."""


@dataclass(frozen=True)
class PairStarted(Message):
    agent_id: str
    name: str
    agent_nonce: str


@dataclass(frozen=True)
class PairFinish(Message):
    """Manager -> agent, after the user compared the codes: here is the token."""

    manager_id: str
    agent_nonce: str
    token: str
    manager_cert: str = ""
    """A TLS manager: its certificate (PEM), whose SHA-256 :class:`PairStart` announced. The agent pins it and
    from then on talks to the manager only over HTTPS, trusting this certificate alone. Empty without TLS."""


@dataclass(frozen=True)
class WorkRequest(Message):
    """Agent -> manager: give me frames. ``warm_tasks`` have a Blender already loaded on the agent."""

    agent_id: str
    warm_tasks: list[str] = field(default_factory=list)
    queued_frames: int = 0
    """Frames the agent still holds from earlier assignments (it asks ahead so it never idles)."""
    startup_seconds: float | None = None
    """How long its latest Blender took to start and load its file: what a new task costs it up front."""


@dataclass(frozen=True)
class WorkAssignment(Message):
    """Manager -> agent: render these frames of one task, in this order."""

    task_id: str
    attempt: str
    """Identifies this lease; uploads and failures quote it so late results can be told apart."""
    frames: list[int]
    file_sha256: str
    file_name: str
    file_size: int
    data_type: str
    """``SINGLE_FILE`` (a .blend) or ``MULTI_FILE`` (a zip project)."""
    scene: str
    blender_version: str
    """``major.minor`` of the Blender that saved the file: the agent picks a Blender that can open it."""
    output_type: str
    """The scene's RenderOutputType name; movie types are rendered as lossless PNG frames for the merge."""
    trusted: bool = False
    """Python auto-exec of the .blend is allowed only when True."""
    frame_timeout_s: float | None = None
    """Stop a frame that makes no progress for this long (None: no limit)."""
    memory_limit_mb: float | None = None
    """Stop a frame whose Blender uses more memory than this (None: no limit)."""
    main_blend: str | None = None
    """For MULTI_FILE: the path of the main .blend inside the zip (``/``-separated, relative)."""
    tile_frame: int | None = None
    """For a still split into tiles: the frame every tile renders. ``frames`` then holds tile indices
    (into :attr:`tile_regions`), and each upload's frame number is the tile index."""
    tile_regions: list[list[int]] = field(default_factory=list)
    """For a tiled still: tile index -> ``[x0, y0, x1, y1]``, pixels of the final image, origin at the top
    left, x1 and y1 exclusive. Each tile is rendered at the full image size with only its region filled
    (border render without crop), in a lossless format (PNG, or EXR for EXR output) for the stitch."""


@dataclass(frozen=True)
class FrameProgress(Message):
    task_id: str
    attempt: str
    frame: int
    progress: float
    """0..1 within the frame."""


@dataclass(frozen=True)
class Heartbeat(Message):
    agent_id: str
    state: AgentState
    running: list[FrameProgress] = field(default_factory=list)
    queued: list[FrameProgress] = field(default_factory=list)
    """Frames assigned and not started yet (progress 0)."""

    @classmethod
    def _build(cls, values: dict[str, Any]) -> Self:
        values["state"] = AgentState(values["state"])
        values["running"] = [FrameProgress.from_dict(p) for p in values.get("running", [])]
        values["queued"] = [FrameProgress.from_dict(p) for p in values.get("queued", [])]
        return cls(**values)


@dataclass(frozen=True)
class HeartbeatReply(Message):
    known: bool = True
    """False when the manager does not know this agent (restarted, or revoked): say hello again."""
    abandon: list[FrameProgress] = field(default_factory=list)
    """Frames to stop or skip: their task was cancelled, or another agent finished them first."""
    cancel_tasks: list[str] = field(default_factory=list)

    @classmethod
    def _build(cls, values: dict[str, Any]) -> Self:
        values["abandon"] = [FrameProgress.from_dict(p) for p in values.get("abandon", [])]
        return cls(**values)


@dataclass(frozen=True)
class FrameFailure(Message):
    """Agent -> manager: a frame could not be rendered."""

    agent_id: str
    attempt: str
    error: str
    """Blender's own words, e.g. ``Error: Build without OpenImageDenoiser``."""
    fault: str
    """A class from :class:`agent.output.Fault` (``out-of-memory``, ``gpu-error``, ...)."""
    log_tail: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FrameAccepted(Message):
    """Manager -> agent after an upload. ``duplicate``: another attempt already delivered it."""

    accepted: bool
    duplicate: bool = False


def bearer(token: str) -> dict[str, str]:
    """The header that authenticates a request with the farm token."""
    return {AUTH_HEADER: BEARER + token}


def token_from_header(value: str | None) -> str | None:
    if value is None or not value.startswith(BEARER):
        return None
    return value[len(BEARER) :].strip() or None


__all__ = [
    "AGENT_ATTACH",
    "AGENT_INFO",
    "MANAGER_FILE",
    "MANAGER_FRAME",
    "MANAGER_FRAME_FAILED",
    "MANAGER_HEARTBEAT",
    "MANAGER_HELLO",
    "MANAGER_WORK",
    "PROTOCOL_VERSION",
    "SERVICE_TYPE",
    "AgentInfo",
    "AgentState",
    "AttachRequest",
    "BlenderVersion",
    "FrameAccepted",
    "FrameFailure",
    "FrameProgress",
    "Heartbeat",
    "HeartbeatReply",
    "ProtocolError",
    "TxtKey",
    "WorkAssignment",
    "WorkRequest",
    "bearer",
    "token_from_header",
]
