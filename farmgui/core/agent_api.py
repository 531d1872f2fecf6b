"""The agents' endpoints as plain Starlette routes: the manager's hot path.

100 agents send the manager ~700 requests a second (heartbeats, work requests, one upload per frame). As FastAPI
routes each paid for matching against every route before it (~0.2 ms), dependency solving (the token check ran in a
worker thread: a thread hop per request) and re-encoding what it returned; in benchmarks/manager_scale.py's
profile that framework work was about half of the manager's CPU. Here each endpoint is one function of the
request: the token checked in place, the message parsed once by the protocol's pydantic adapter, the answer
written as JSON. ``api.create_app`` puts these routes ahead of all others and registers the same functions as
FastAPI routes for the OpenAPI document, so there is one implementation, and tests/farmgui/test_schemathesis.py
holds it to the document.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import re
import secrets
from typing import Any, TypeVar

from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent import protocol as p

from .api_errors import ApiError
from .auth import token_matches
from .service import FarmService, FrameUpload

_M = TypeVar("_M", bound=p.Message)

MAX_FRAME = 1_048_574
"""Blender's MAXFRAME; frame numbers run from its negative (MINAFRAME) to it."""
MAX_MESSAGE_BYTES = 1 << 20
"""An agent's JSON message is a few KiB; a larger body is refused before it is parsed (413)."""
INT32 = (-(2**31), 2**31 - 1)
"""Integers in agents' messages (frames, ports, counts) must fit 32 bits: a 10**30 would otherwise
reach the database (64-bit integers) and fail there."""
SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"
EXTENSION_PATTERN = r"^\.?[A-Za-z0-9]{1,8}$"
_SHA256 = re.compile(SHA256_PATTERN)
_EXTENSION = re.compile(EXTENSION_PATTERN)
_UPLOAD_PREFIX = ".upload-"

bearer = HTTPBearer(auto_error=False, description="The farm token (see the data directory's `token` file).")
"""Reads ``Authorization: Bearer <token>`` (the scheme in any case); its use as a dependency puts the scheme in the
OpenAPI document."""


def require_token(token: str, credentials: HTTPAuthorizationCredentials | None) -> None:
    """Every request's check: the farm token, compared in constant time."""
    if credentials is None or not token_matches(token, credentials.credentials):
        raise ApiError(401, "missing or wrong farm token")


_ADAPTERS: dict[type[p.Message], TypeAdapter[Any]] = {}


def adapter(cls: type[p.Message]) -> TypeAdapter[Any]:
    """The pydantic adapter of a protocol message (made once: building one costs milliseconds)."""
    found = _ADAPTERS.get(cls)
    if found is None:
        found = _ADAPTERS[cls] = TypeAdapter(cls)
    return found


def check_values(message: p.Message) -> None:
    """What the protocol's types cannot say: finite numbers, 32-bit integers, encodable text.

    Only the fields the protocol knows are looked at: unknown keys (from a newer peer) were dropped by the parse,
    whatever they held. The walk goes over the message's own objects (no ``asdict`` copy: that copy was a third
    of reading a message) and is iterative, so a deeply nested value cannot exhaust the stack.
    """
    stack: list[Any] = [message]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is str:
            if not node.isascii():
                try:
                    node.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise ApiError(400, "a string in the message is not valid Unicode (a lone surrogate)") from exc
        elif kind is int:
            if not INT32[0] <= node <= INT32[1]:
                raise ApiError(400, "an integer in the message is out of range (32 bits)")
        elif kind is float:
            if not math.isfinite(node):
                raise ApiError(400, "a number in the message is not finite")
        elif kind is list or kind is tuple:
            stack.extend(node)
        elif kind is dict:
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, p.Message):
            stack.extend(vars(node).values())


async def read_message(request: Request, cls: type[_M]) -> _M:
    """Read an agent's JSON message: size-limited, strictly typed, checked values."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_MESSAGE_BYTES:
            raise ApiError(413, f"the message is larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        message: _M = adapter(cls).validate_json(bytes(raw), strict=True)
    except ValidationError as exc:
        parts = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
        raise ApiError(400, f"{cls.__name__}: " + "; ".join(parts)) from exc
    check_values(message)
    return message


def _frame_number(request: Request) -> int:
    """The path's frame number, with the answers FastAPI gave for a path parameter (422)."""
    text = request.path_params["frame"]
    try:
        frame = int(text)
    except ValueError:
        raise ApiError(
            422, "path.frame: Input should be a valid integer, unable to parse string as an integer"
        ) from None
    if not -MAX_FRAME <= frame <= MAX_FRAME:
        raise ApiError(422, f"path.frame: Input should be within [{-MAX_FRAME}, {MAX_FRAME}]")
    return frame


def _header(request: Request, name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = request.headers.get(name)
    if value is None:
        raise ApiError(422, f"header.{name.lower()}: Field required")
    if pattern is not None and not pattern.match(value):
        raise ApiError(422, f"header.{name.lower()}: String should match pattern '{pattern.pattern}'")
    return value


def _seconds(request: Request) -> float:
    text = _header(request, p.HEADER_RENDER_SECONDS)
    try:
        seconds = float(text)
    except ValueError:
        raise ApiError(422, f"header.{p.HEADER_RENDER_SECONDS.lower()}: Input should be a valid number") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ApiError(422, f"header.{p.HEADER_RENDER_SECONDS.lower()}: Input should be a finite number >= 0")
    return seconds


class AgentEndpoints:
    """The agents' side of the API over one service and one farm token."""

    def __init__(self, service: FarmService, token: str) -> None:
        self.service = service
        self._token = token

    def routes(self) -> list[Route]:
        """Starlette routes, to be matched before any other (``api.create_app``)."""
        return [
            Route(p.MANAGER_HEARTBEAT, self.heartbeat, methods=["POST"]),
            Route(p.MANAGER_WORK, self.work, methods=["POST"]),
            Route(p.MANAGER_FRAME, self.frame, methods=["PUT"]),
            Route(p.MANAGER_FRAME_FAILED, self.frame_failed, methods=["POST"]),
            Route(p.MANAGER_HELLO, self.hello, methods=["POST"]),
        ]

    async def _authorize(self, request: Request) -> None:
        require_token(self._token, await bearer(request))

    async def hello(self, request: Request) -> Response:
        await self._authorize(request)
        info = await read_message(request, p.AgentInfo)
        if info.protocol != p.PROTOCOL_VERSION:
            raise ApiError(409, f"protocol {info.protocol} is not {p.PROTOCOL_VERSION}: update the agent")
        host = request.client.host if request.client else None
        self.service.hello(info, host)
        return JSONResponse({"heartbeat_interval_s": p.HEARTBEAT_INTERVAL_S, "protocol": p.PROTOCOL_VERSION})

    async def heartbeat(self, request: Request) -> Response:
        await self._authorize(request)
        beat = await read_message(request, p.Heartbeat)
        return JSONResponse(self.service.heartbeat(beat).to_dict())

    async def work(self, request: Request) -> Response:
        await self._authorize(request)
        req = await read_message(request, p.WorkRequest)
        assignment = self.service.request_work(req)
        if assignment is None:
            return Response(status_code=204)
        return JSONResponse(assignment.to_dict())

    async def frame(self, request: Request) -> Response:
        """A rendered frame: the body is the image file, checked against its sha256 header."""
        await self._authorize(request)
        task_id: str = request.path_params["task_id"]
        frame = _frame_number(request)
        agent_id = _header(request, p.HEADER_AGENT_ID)
        sha256 = _header(request, p.HEADER_SHA256, _SHA256).lower()
        seconds = _seconds(request)
        extension = _header(request, p.HEADER_EXTENSION, _EXTENSION)
        attempt = request.headers.get(p.HEADER_ATTEMPT)
        tmp_dir = self.service.frame_upload_dir(task_id)
        if tmp_dir is None:  # not a task being rendered: nothing is written, as for any late frame
            return JSONResponse(p.FrameAccepted(accepted=False).to_dict())
        digest = hashlib.sha256()
        # A plain exclusive create: tempfile.NamedTemporaryFile cost ~1 ms a frame (its name generator and
        # wrapper objects) in the manager's profile.
        received = tmp_dir / f"{_UPLOAD_PREFIX}{secrets.token_hex(8)}"
        fd = os.open(received, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in request.stream():
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            received.unlink(missing_ok=True)
            raise
        if digest.hexdigest() != sha256:
            received.unlink(missing_ok=True)
            raise ApiError(400, "the frame's sha256 does not match its bytes (damaged in transit)")
        accepted, committed = self.service.receive_frame(
            FrameUpload(task_id, frame, agent_id, attempt, received, sha256, seconds, extension)
        )
        if committed is not None:
            # Answered once the row is in the database, so the agent keeps the frame until then; the loop serves
            # other requests meanwhile, and frames arriving together share one transaction.
            try:
                await asyncio.wrap_future(committed)
            except SQLAlchemyError as exc:  # the frame is queued again (FarmService._row_written): the agent resends
                raise ApiError(503, f"the frame could not be stored ({type(exc).__name__}); send it again") from exc
        return JSONResponse(accepted.to_dict())

    async def frame_failed(self, request: Request) -> Response:
        await self._authorize(request)
        task_id: str = request.path_params["task_id"]
        frame = _frame_number(request)
        failure = await read_message(request, p.FrameFailure)
        outcome = self.service.frame_failed(task_id, frame, failure)
        return JSONResponse({"outcome": outcome.value})
