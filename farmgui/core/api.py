"""The manager's REST API (FastAPI): a thin shell over :class:`FarmService`.

Every endpoint needs ``Authorization: Bearer <farm token>``; the OpenAPI document (``/openapi.json``)
says so. Errors are JSON ``{"error": "..."}`` with a 4xx status, and the document lists, for each
endpoint, every status it answers and the shape of each body (tests/farmgui/test_schemathesis.py holds
the server to it). Agents' JSON messages are checked against the protocol's types before the service
sees them: strict types, finite numbers, integers that fit 32 bits, at most ``MAX_MESSAGE_BYTES``.
"""

from __future__ import annotations

import codecs
import functools
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, Response, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData, Headers
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent import protocol as p

from .agent_api import (
    EXTENSION_PATTERN,
    INT32,
    MAX_FRAME,
    SHA256_PATTERN,
    AgentEndpoints,
    adapter,
    bearer,
    require_token,
)
from .api_errors import ApiError
from .links import AgentLinks
from .models import RenderTask
from .pairing_api import pairing_router
from .service import (
    BLENDER_VERSION,
    MAX_TILES,
    BadRequest,
    Conflict,
    FarmError,
    FarmService,
    NotFound,
    TaskOptions,
)
from .storage import IncomingFile, Storage, UploadTooLarge

_M = TypeVar("_M", bound=p.Message)

MAX_PRIORITY = 1_000_000
_FRAME = PathParam(ge=-MAX_FRAME, le=MAX_FRAME, description="A frame number (Blender's range)")


# -- what the document says the answers look like ------------------------------------------------
# Documentation only: the routes return what the service returns, and the schemathesis test checks
# that it fits these. (As response_model they would also filter the output at run time.)
class ErrorBody(BaseModel):
    """Every 4xx answer."""

    error: str = Field(description="What is wrong, in words for the user")


class WorkerBody(BaseModel):
    agent: str
    share: float
    progress: float


class ProgressBody(BaseModel):
    stage: str
    stage_progress: float | None = Field(description="null where a stage progress makes no sense (queued, paused...)")
    total_progress: float
    frames_done: int
    frames_total: int
    frames_rendered: int
    workers: list[WorkerBody]
    error: str | None
    waiting_reason: str | None


class FrameBody(BaseModel):
    frame: int
    state: str
    agent: str | None
    seconds: float | None


class EventBody(BaseModel):
    at: str
    level: str
    agent: str | None
    frame: int | None
    fault: str | None
    message: str
    log_tail: list[str]


class CurrentFrameBody(BaseModel):
    task: str
    frame: int
    progress: float


class AgentBody(BaseModel):
    agent: str
    name: str
    host: str
    port: int
    online: bool
    enabled: bool
    blenders: list[str]
    current: list[CurrentFrameBody]
    seconds_per_frame: float | None


class TaskKeyBody(BaseModel):
    task_key: str


class EndpointBody(BaseModel):
    path: str
    methods: list[str]
    summary: str


class RootBody(BaseModel):
    name: str
    protocol: int
    endpoints: list[EndpointBody]


class HelloReplyBody(BaseModel):
    heartbeat_interval_s: float
    protocol: int


class FrameFailedReplyBody(BaseModel):
    outcome: str


_ERROR_TEXT = {
    400: "The input is wrong (not a blend file, a malformed message, a damaged upload); `error` says how",
    401: "Missing or wrong farm token",
    404: "No such task, agent or file",
    409: "The request does not fit the task's stage (e.g. downloading an unfinished task)",
    413: "Larger than the limit",
    422: "A parameter does not fit this document",
    503: "The manager could not store it now (its database refused the write); send it again",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": _ERROR_TEXT[code]} for code in codes}


def _ok(model: Any, description: str = "Successful Response", code: int = 200) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": model, "description": description}}


def _column_schema(column: Any) -> dict[str, Any]:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        python_type = str
    if issubclass(python_type, bool):
        schema: dict[str, Any] = {"type": "boolean"}
    elif issubclass(python_type, int):
        schema = {"type": "integer"}
    elif issubclass(python_type, float):
        schema = {"type": "number"}
    else:  # strings, enums (by value) and datetimes (ISO 8601)
        schema = {"type": "string"}
    return {"anyOf": [schema, {"type": "null"}]} if column.nullable else schema


@functools.cache
def _task_schema() -> dict[str, Any]:
    """A task as ``FarmService.task`` returns it: every column of ``render_tasks``, and a few more."""
    properties = {column.key: _column_schema(column) for column in RenderTask.__table__.columns}
    properties.update(
        task_key={"type": "string"},
        frames_total={"type": "integer"},
        frames_done={"type": "integer"},
        waiting_reason={"anyOf": [{"type": "string"}, {"type": "null"}]},
    )
    return {"type": "object", "properties": properties, "required": sorted(properties)}


def _task_list() -> dict[str, Any]:
    return {"type": "array", "items": _task_schema()}


def _task_doc(description: str = "The task, every field") -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {"application/json": {"schema": _task_schema()}}}}


def _inline(schema: dict[str, Any], bounded: bool) -> dict[str, Any]:
    """pydantic's schema of a protocol type with its ``$defs`` written in place (none is recursive);
    ``bounded`` adds the 32-bit limits the API enforces on incoming integers."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(v) for v in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            rest = {k: resolve(v) for k, v in node.items() if k != "$ref"}
            return {**resolve(defs[ref.removeprefix("#/$defs/")]), **rest}
        result = {k: resolve(v) for k, v in node.items()}
        if bounded and result.get("type") == "integer":
            result.setdefault("minimum", INT32[0])
            result.setdefault("maximum", INT32[1])
        return result

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def _message_doc(cls: type[p.Message]) -> dict[str, Any]:
    schema = _inline(adapter(cls).json_schema(), bounded=True)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _hello_doc() -> dict[str, Any]:
    doc = _message_doc(p.AgentInfo)
    blender = doc["requestBody"]["content"]["application/json"]["schema"]["properties"]["blenders"]["items"]
    blender["properties"]["version"]["pattern"] = f"^{BLENDER_VERSION.pattern}$"
    return doc


def _reply_doc(cls: type[p.Message], description: str) -> dict[int | str, dict[str, Any]]:
    schema = _inline(adapter(cls).json_schema(mode="serialization"), bounded=False)
    return {200: {"description": description, "content": {"application/json": {"schema": schema}}}}


_BINARY = {"type": "string", "format": "binary"}


# -- run_task's upload: streamed into the data directory as it arrives ---------------------------
# Starlette's form parser spools a file part into a SpooledTemporaryFile (in memory, then in /tmp);
# the endpoint then had to copy it into the data directory and the store hash it again: three passes
# and twice the disk for an 8 GiB upload. Here python-multipart's streaming parser hands each file
# part's bytes straight to an IncomingFile under uploads/ (written and hashed in one pass, refused
# with a 413 the moment the limit is passed). FastAPI still validates the form (the documented
# fields, their 422s, the OpenAPI document): it asks the request for ``form()`` and gets this one's.
# Measured (benchmarks/upload.py, 1 GiB over loopback, 2 busy cores): 14.3 s -> 6.4 s; the file written
# twice and read twice -> written once; other requests held up 1.7 s (the service lock held while
# store_file hashed) -> 0.14 s.
class _StreamedUpload(UploadFile):
    """A file part, already written under ``uploads/`` and hashed as it arrived.

    The endpoint keeps it (``incoming.keep``: a rename into the task's upload path); otherwise closing
    the form, which FastAPI does after every request (a 422 included), removes it.
    """

    def __init__(self, incoming: IncomingFile, filename: str, headers: Headers) -> None:
        super().__init__(file=incoming.file, size=0, filename=filename, headers=headers)
        self.incoming = incoming

    async def close(self) -> None:
        self.incoming.discard()


def _decode(raw: bytes | bytearray, charset: str) -> str:
    try:
        return raw.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return raw.decode("latin-1")


@dataclass
class _Part:
    disposition: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    name: str = ""
    data: bytearray = field(default_factory=bytearray)
    upload: _StreamedUpload | None = None


class _StreamedForm:
    """One multipart/form-data body, parsed as it arrives: file parts go to disk, fields stay in memory.

    The limits and error messages are Starlette's (``max_files``, ``max_fields``, ``max_part_size``
    for a field), plus ``limit``: the bytes of all file parts together.
    """

    def __init__(
        self, storage: Storage, limit: int, charset: str, max_files: float, max_fields: float, max_part_size: int
    ) -> None:
        self.items: list[tuple[str, str | StarletteUploadFile]] = []
        self.uploads: list[_StreamedUpload] = []
        self._storage = storage
        self._limit = limit
        self._charset = charset
        self._max_files = max_files
        self._max_fields = max_fields
        self._max_part_size = max_part_size
        self._files = 0
        self._fields = 0
        self._part = _Part()
        self._header_name = b""
        self._header_value = b""

    # python-multipart's callbacks (called from MultipartParser.write)
    def on_part_begin(self) -> None:
        self._part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        name = self._header_name.lower()
        if name == b"content-disposition":
            self._part.disposition = self._header_value
        self._part.headers.append((name, self._header_value))
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        part = self._part
        _, options = parse_options_header(part.disposition)
        if b"name" not in options:
            raise StarletteHTTPException(400, 'The Content-Disposition header field "name" must be provided.')
        part.name = _decode(options[b"name"], self._charset)
        if b"filename" not in options:
            self._fields += 1
            if self._fields > self._max_fields:
                raise StarletteHTTPException(400, f"Too many fields. Maximum number of fields is {self._max_fields}.")
            return
        self._files += 1
        if self._files > self._max_files:
            raise StarletteHTTPException(400, f"Too many files. Maximum number of files is {self._max_files}.")
        received = sum(upload.incoming.size for upload in self.uploads)
        incoming = self._storage.incoming(self._limit - received)
        part.upload = _StreamedUpload(incoming, _decode(options[b"filename"], self._charset), Headers(raw=part.headers))
        self.uploads.append(part.upload)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        if part.upload is not None:
            part.upload.incoming.write(memoryview(data)[start:end])
        elif len(part.data) + end - start > self._max_part_size:
            raise StarletteHTTPException(400, f"Part exceeded maximum size of {int(self._max_part_size / 1024)}KB.")
        else:
            part.data += data[start:end]

    def on_part_end(self) -> None:
        part = self._part
        if part.upload is None:
            self.items.append((part.name, _decode(part.data, self._charset)))
            return
        part.upload.incoming.finish()
        part.upload.size = part.upload.incoming.size
        self.items.append((part.name, part.upload))

    async def parse(self, boundary: bytes, stream: AsyncIterator[bytes]) -> FormData:
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self.on_part_begin,
                "on_part_data": self.on_part_data,
                "on_part_end": self.on_part_end,
                "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value,
                "on_header_end": self.on_header_end,
                "on_headers_finished": self.on_headers_finished,
            },
        )
        try:
            async for chunk in stream:
                # Parsing, hashing and writing run in a worker thread (hashlib and file writes let go of
                # the GIL), so the event loop keeps serving agents' heartbeats during a long upload.
                await anyio.to_thread.run_sync(parser.write, chunk)
            parser.finalize()
        except BaseException as exc:  # too large, malformed, the client gone: nothing stays behind
            for upload in self.uploads:
                upload.incoming.discard()
            if isinstance(exc, UploadTooLarge):
                raise StarletteHTTPException(413, f"the upload is too large: {exc}") from exc
            if isinstance(exc, FormParserError):
                raise StarletteHTTPException(400, "Invalid multipart data.") from exc
            raise
        kept = {id(value) for _, value in self.items}
        for upload in self.uploads:  # a part the body ended inside of
            if id(upload) not in kept:
                upload.incoming.discard()
        return FormData(self.items)


class _FormAwaitable:
    """What ``Request.form()`` returns: awaited, the form; as an async context manager, closed after."""

    def __init__(self, form: Coroutine[Any, Any, FormData]) -> None:
        self._pending = form
        self._form: FormData | None = None

    def __await__(self) -> Generator[Any, None, FormData]:
        return self._pending.__await__()

    async def __aenter__(self) -> FormData:
        self._form = await self._pending
        return self._form

    async def __aexit__(self, *exc_info: object) -> None:
        if self._form is not None:
            await self._form.close()


class _UploadRequest(Request):
    """A request whose multipart form is a :class:`_StreamedForm` (anything else: Starlette's)."""

    def __init__(self, request: Request, storage: Storage, limit: int) -> None:
        super().__init__(request.scope, request.receive)
        self._storage = storage
        self._limit = limit

    def form(
        self, *, max_files: int | float = 1000, max_fields: int | float = 1000, max_part_size: int = 1024 * 1024
    ) -> _FormAwaitable:
        return _FormAwaitable(self._read_form(max_files, max_fields, max_part_size))

    async def _read_form(self, max_files: float, max_fields: float, max_part_size: int) -> FormData:
        content_type, params = parse_options_header(self.headers.get("Content-Type"))
        if content_type != b"multipart/form-data":  # url-encoded fields, or no form: no file to stream
            return await super().form(max_files=max_files, max_fields=max_fields, max_part_size=max_part_size)
        boundary = params.get(b"boundary")
        if not boundary:
            raise StarletteHTTPException(400, "Missing boundary in multipart.")
        try:
            charset = codecs.lookup(params.get(b"charset", b"utf-8").decode("latin-1")).name
        except LookupError:
            charset = "latin-1"
        form = _StreamedForm(self._storage, self._limit, charset, max_files, max_fields, max_part_size)
        async with aclosing(self.stream()) as stream:
            return await form.parse(boundary, stream)


def _upload_route(service: FarmService, authorize: Callable[[Request], Awaitable[None]]) -> type[APIRoute]:
    """The route class of run_task: the token is checked before a byte of the body is read (a stranger
    cannot fill the disk), then the body streams into the data directory (:class:`_StreamedForm`)."""

    class UploadRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def streamed(request: Request) -> Response:
                await authorize(request)
                return await handler(_UploadRequest(request, service.storage, service.max_upload_bytes))

            return streamed

    return UploadRoute


def create_app(service: FarmService, token: str, links: AgentLinks | None = None) -> FastAPI:
    """The manager's ASGI application."""

    async def authorized(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        # async: FastAPI runs a plain def dependency in a worker thread, and the pool (40 threads) is shared with
        # file downloads: 100 agents fetching a task's file at once held every poll back by ~0.3 s.
        require_token(token, credentials)

    async def authorized_early(request: Request) -> None:
        """The same check, for a route that must make it before the body is read (uploads)."""
        require_token(token, await bearer(request))

    app = FastAPI(
        title="Frameherd manager",
        version="1",
        description="Render .blend files on the farm: upload, poll progress, download the result.",
        dependencies=[Depends(authorized)],
        responses=_errors(401),
        # The document is served below, behind the token like everything else; no unauthenticated docs UI.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(FarmError)
    async def _farm_error(_: Request, exc: FarmError) -> JSONResponse:
        status = {NotFound: 404, Conflict: 409, BadRequest: 400}.get(type(exc), 400)
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()]
        return JSONResponse({"error": "; ".join(parts) or "invalid request"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.get("/api/", summary="The API root: its endpoints", response_model=None, responses=_ok(RootBody))
    def root() -> dict[str, Any]:
        paths = app.openapi()["paths"]
        return {
            "name": "Frameherd manager",
            "protocol": p.PROTOCOL_VERSION,
            "endpoints": [
                {
                    "path": path,
                    "methods": sorted(m.upper() for m in ops),
                    "summary": next(iter(ops.values())).get("summary", ""),
                }
                for path, ops in sorted(paths.items())
            ],
        }

    if links is not None:
        app.include_router(pairing_router(links, _errors))
    app.include_router(_user_router(service, authorized_early))
    endpoints = AgentEndpoints(service, token)
    app.include_router(_agent_router(endpoints))
    # The agents' hot routes first: matched before any other, answered without FastAPI's per-request work.
    app.router.routes[:0] = endpoints.routes()
    return app


def _progress_json(service: FarmService, task_key: str) -> dict[str, Any]:
    prog = service.progress(task_key)
    return {
        "stage": prog.stage.value,
        "stage_progress": None if math.isinf(prog.stage_progress) else prog.stage_progress,
        "total_progress": prog.total_progress,
        "frames_done": prog.frames_done,
        "frames_total": prog.frames_total,
        "frames_rendered": prog.frames_rendered,
        "workers": [{"agent": w.agent, "share": w.share, "progress": w.progress} for w in prog.workers],
        "error": prog.error,
        "waiting_reason": prog.waiting_reason,
    }


def _user_router(service: FarmService, authorize: Callable[[Request], Awaitable[None]]) -> APIRouter:
    router = APIRouter(prefix="/api")

    @router.get(
        "/render-tasks/",
        summary="All tasks",
        response_model=None,
        responses={200: {"description": "Every task", "content": {"application/json": {"schema": _task_list()}}}},
    )
    def list_tasks() -> list[dict[str, Any]]:
        return service.tasks()

    def run_task(
        file: Annotated[
            UploadFile,
            File(description="The .blend file, or a .zip project (one or more .blend files and what they use)"),
        ],
        scene: Annotated[str | None, Form()] = None,
        frame_start: Annotated[int | None, Form(ge=-MAX_FRAME, le=MAX_FRAME)] = None,
        frame_end: Annotated[int | None, Form(ge=-MAX_FRAME, le=MAX_FRAME)] = None,
        frame_step: Annotated[int | None, Form(ge=1, le=MAX_FRAME)] = None,
        priority: Annotated[int, Form(ge=-MAX_PRIORITY, le=MAX_PRIORITY)] = 0,
        trusted: Annotated[bool, Form(description="Allow the file's Python scripts to run")] = False,
        preview_first: Annotated[bool, Form(description="Render first, last, middle, ... frames first")] = False,
        frame_timeout_s: Annotated[
            float | None, Form(gt=0, description="Stop and move a frame that makes no progress this long")
        ] = None,
        memory_limit_mb: Annotated[
            float | None, Form(gt=0, description="Stop a frame whose Blender uses more memory than this")
        ] = None,
        tiles: Annotated[
            int | None,
            Form(
                ge=1,
                le=MAX_TILES,
                description="Split a single frame into this many tiles, rendered on different agents and "
                "stitched into one image (the task's frame range must be one frame)",
            ),
        ] = None,
        tile_overlap: Annotated[
            int | None,
            Form(ge=0, le=1024, description="Pixels each tile renders beyond its region (for denoising)"),
        ] = None,
        main_blend: Annotated[
            str | None,
            Form(max_length=4096, description="For a .zip project: the .blend inside it to render"),
        ] = None,
    ) -> dict[str, str]:
        # The body is on disk already, hashed and within the limit (the route class streamed it there);
        # the task is made only now, so a refused upload (413, 422, a dropped connection) leaves none.
        if not isinstance(file, _StreamedUpload):
            raise TypeError("run_task's file did not come through its streaming route class")
        upload, task_id = service.init_new_task(Path(file.filename or "").name)
        file.incoming.keep(upload)
        options = TaskOptions(
            scene,
            frame_start,
            frame_end,
            frame_step,
            priority,
            trusted,
            preview_first,
            frame_timeout_s,
            memory_limit_mb,
            tiles,
            tile_overlap,
            main_blend,
        )
        service.run_task(task_id, options)
        return {"task_key": task_id}

    router.add_api_route(
        "/render-tasks/run_task/",
        run_task,
        methods=["POST"],
        status_code=201,
        summary="Upload a .blend file and start rendering it",
        response_model=None,
        responses={**_ok(TaskKeyBody, "The task was queued", 201), **_errors(400, 413, 422)},
        route_class_override=_upload_route(service, authorize),
    )

    @router.get(
        "/render-tasks/{task_key}/",
        summary="Every field of a task",
        response_model=None,
        responses={**_task_doc(), **_errors(404, 422)},
    )
    def get_task(task_key: str) -> dict[str, Any]:
        return service.task(task_key)

    @router.get(
        "/render-tasks/{task_key}/progress/",
        summary="Stage and progress",
        response_model=None,
        responses={**_ok(ProgressBody), **_errors(404, 422)},
    )
    async def progress(task_key: str) -> dict[str, Any]:
        # On the event loop, not in a worker thread: it is answered from the scheduler's memory and one row read
        # (~1 ms), and the thread pool may be busy with downloads (benchmarks/manager_scale.py polls it 5x a second).
        return _progress_json(service, task_key)

    @router.get(
        "/render-tasks/{task_key}/frames/",
        summary="Every frame's state and agent",
        response_model=None,
        responses={**_ok(list[FrameBody]), **_errors(404, 422)},
    )
    def frames(task_key: str) -> list[dict[str, Any]]:
        return service.frames(task_key)

    @router.get(
        "/render-tasks/{task_key}/events/",
        summary="The task's log, with Blender's own error text",
        response_model=None,
        responses={**_ok(list[EventBody]), **_errors(404, 422)},
    )
    def events(task_key: str) -> list[dict[str, Any]]:
        return service.events(task_key)

    @router.get(
        "/render-tasks/{task_key}/download/",
        summary="The result: the video, or a zip of the frames (409 until finished)",
        response_class=FileResponse,
        responses={
            200: {"description": "The file", "content": {"application/octet-stream": {"schema": _BINARY}}},
            **_errors(404, 409, 422),
        },
    )
    def download(task_key: str) -> FileResponse:
        path = service.result_file(task_key)
        task = service.task(task_key)
        stem = Path(task["original_name"] or "render").stem
        return FileResponse(path, media_type="application/octet-stream", filename=f"{stem}{path.suffix}")

    @router.post(
        "/render-tasks/{task_key}/cancel/",
        summary="Cancel a task",
        response_model=None,
        responses={**_task_doc(), **_errors(404, 409, 422)},
    )
    def cancel(task_key: str) -> dict[str, Any]:
        service.cancel(task_key)
        return service.task(task_key)

    @router.post(
        "/render-tasks/{task_key}/pause/",
        summary="Pause: frames being rendered finish, no new ones start",
        response_model=None,
        responses={**_task_doc(), **_errors(404, 409, 422)},
    )
    def pause(task_key: str) -> dict[str, Any]:
        service.pause(task_key)
        return service.task(task_key)

    @router.post(
        "/render-tasks/{task_key}/resume/",
        summary="Resume a paused task",
        response_model=None,
        responses={**_task_doc(), **_errors(404, 409, 422)},
    )
    def resume(task_key: str) -> dict[str, Any]:
        service.resume(task_key)
        return service.task(task_key)

    @router.post(
        "/render-tasks/{task_key}/retry/",
        summary="Render a failed task's failed frames again",
        response_model=None,
        responses={**_task_doc(), **_errors(404, 409, 422)},
    )
    def retry(task_key: str) -> dict[str, Any]:
        service.retry(task_key)
        return service.task(task_key)

    @router.post(
        "/render-tasks/{task_key}/priority/",
        summary="Change a task's priority",
        response_model=None,
        responses={**_task_doc(), **_errors(404, 422)},
    )
    def priority(task_key: str, value: Annotated[int, Form(ge=-MAX_PRIORITY, le=MAX_PRIORITY)]) -> dict[str, Any]:
        service.set_priority(task_key, value)
        return service.task(task_key)

    @router.get(
        "/agents/", summary="Every agent the manager knows", response_model=None, responses=_ok(list[AgentBody])
    )
    def agents() -> list[dict[str, Any]]:
        return [
            {
                "agent": a.agent_id,
                "name": a.name,
                "host": a.host,
                "port": a.port,
                "online": a.online,
                "enabled": a.enabled,
                "blenders": a.blenders,
                "current": [{"task": t, "frame": f, "progress": pr} for t, f, pr in a.current],
                "seconds_per_frame": a.seconds_per_frame,
            }
            for a in service.agents()
        ]

    @router.post("/agents/{agent_id}/enable/", summary="Let an agent take work", responses=_errors(404, 422))
    def enable(agent_id: str) -> dict[str, bool]:
        service.set_agent_enabled(agent_id, True)
        return {"enabled": True}

    @router.post("/agents/{agent_id}/disable/", summary="Give an agent no more work", responses=_errors(404, 422))
    def disable(agent_id: str) -> dict[str, bool]:
        service.set_agent_enabled(agent_id, False)
        return {"enabled": False}

    return router


def _agent_router(endpoints: AgentEndpoints) -> APIRouter:
    """The agents' endpoints in the OpenAPI document. ``create_app`` puts ``endpoints.routes()`` ahead of these, so
    the same functions answer without FastAPI's per-request work; only the file download is served from here."""
    router = APIRouter(tags=["agents"])
    router.add_api_route(
        p.MANAGER_HELLO,
        endpoints.hello,
        methods=["POST"],
        summary="An agent introduces itself",
        response_model=None,
        responses={**_ok(HelloReplyBody), **_errors(400, 409, 413)},
        openapi_extra=_hello_doc(),
    )
    router.add_api_route(
        p.MANAGER_HEARTBEAT,
        endpoints.heartbeat,
        methods=["POST"],
        summary="An agent's progress; the reply says what to abandon",
        response_model=None,
        responses={**_reply_doc(p.HeartbeatReply, "What to abandon"), **_errors(400, 413)},
        openapi_extra=_message_doc(p.Heartbeat),
    )
    router.add_api_route(
        p.MANAGER_WORK,
        endpoints.work,
        methods=["POST"],
        summary="An agent asks for frames (204: nothing to do)",
        response_model=None,
        responses={
            **_reply_doc(p.WorkAssignment, "Frames to render"),
            204: {"description": "Nothing to do now"},
            **_errors(400, 413),
        },
        openapi_extra=_message_doc(p.WorkRequest),
    )

    @router.get(
        p.MANAGER_FILE,
        summary="A task's file, by its sha256",
        response_class=FileResponse,
        responses={
            200: {"description": "The file", "content": {"application/octet-stream": {"schema": _BINARY}}},
            **_errors(404, 422),
        },
    )
    def file(sha256: Annotated[str, PathParam(pattern=SHA256_PATTERN)]) -> FileResponse:
        return FileResponse(endpoints.service.file_for(sha256.lower()), media_type="application/octet-stream")

    router.add_api_route(
        p.MANAGER_FRAME,
        endpoints.frame,
        methods=["PUT"],
        summary="Upload a rendered frame (the body is the image file)",
        response_model=None,
        responses={**_reply_doc(p.FrameAccepted, "Whether the frame was taken"), **_errors(400, 422, 503)},
        openapi_extra={
            "parameters": [*_FRAME_PATH, *_FRAME_HEADERS],
            "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": _BINARY}}},
        },
    )
    router.add_api_route(
        p.MANAGER_FRAME_FAILED,
        endpoints.frame_failed,
        methods=["POST"],
        summary="An agent could not render a frame",
        response_model=None,
        responses={**_ok(FrameFailedReplyBody), **_errors(400, 413, 422)},
        openapi_extra={"parameters": _FRAME_PATH, **_message_doc(p.FrameFailure)},
    )
    return router


def _header_doc(name: str, schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"in": "header", "name": name, "required": required, "schema": {"title": name, **schema}}


_FRAME_DESCRIPTION = "A frame number (Blender's range)"
_FRAME_PATH: list[dict[str, Any]] = [
    {"in": "path", "name": "task_id", "required": True, "schema": {"title": "Task Id", "type": "string"}},
    {
        "in": "path",
        "name": "frame",
        "required": True,
        "description": _FRAME_DESCRIPTION,
        "schema": {
            "title": "Frame",
            "type": "integer",
            "minimum": -MAX_FRAME,
            "maximum": MAX_FRAME,
            "description": _FRAME_DESCRIPTION,
        },
    },
]
_FRAME_HEADERS = [
    _header_doc(p.HEADER_AGENT_ID, {"type": "string"}),
    _header_doc(p.HEADER_SHA256, {"type": "string", "pattern": SHA256_PATTERN}),
    _header_doc(p.HEADER_RENDER_SECONDS, {"type": "number", "minimum": 0}),
    _header_doc(p.HEADER_EXTENSION, {"type": "string", "pattern": EXTENSION_PATTERN}),
    _header_doc(p.HEADER_ATTEMPT, {"anyOf": [{"type": "string"}, {"type": "null"}]}, required=False),
]
