"""The manager's REST API (FastAPI): a thin shell over :class:`FarmService`.

Every endpoint needs ``Authorization: Bearer <farm token>``; the OpenAPI document (``/openapi.json``)
says so. Errors are JSON ``{"error": "..."}`` with a 4xx status.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, File, Form, Header, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent import protocol as p

from .auth import token_matches
from .service import BadRequest, Conflict, FarmError, FarmService, NotFound, TaskOptions
from .storage import copy_stream

_M = TypeVar("_M", bound=p.Message)
_bearer = HTTPBearer(auto_error=False, description="The farm token (see the data directory's `token` file).")


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_app(service: FarmService, token: str) -> FastAPI:
    """The manager's ASGI application."""

    def authorized(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if credentials is None or not token_matches(token, credentials.credentials):
            raise ApiError(401, "missing or wrong farm token")

    app = FastAPI(
        title="Frameherd manager",
        version="1",
        description="Render .blend files on the farm: upload, poll progress, download the result.",
        dependencies=[Depends(authorized)],
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

    @app.get("/api/", summary="The API root: its endpoints")
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

    app.include_router(_user_router(service))
    app.include_router(_agent_router(service))
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


def _user_router(service: FarmService) -> APIRouter:
    router = APIRouter(prefix="/api")

    @router.get("/render-tasks/", summary="All tasks")
    def list_tasks() -> list[dict[str, Any]]:
        return service.tasks()

    @router.post("/render-tasks/run_task/", status_code=201, summary="Upload a .blend file and start rendering it")
    def run_task(
        file: Annotated[UploadFile, File(description="The .blend file")],
        scene: Annotated[str | None, Form()] = None,
        frame_start: Annotated[int | None, Form()] = None,
        frame_end: Annotated[int | None, Form()] = None,
        frame_step: Annotated[int | None, Form(ge=1)] = None,
        priority: Annotated[int, Form()] = 0,
        trusted: Annotated[bool, Form(description="Allow the file's Python scripts to run")] = False,
        preview_first: Annotated[bool, Form(description="Render first, last, middle, ... frames first")] = False,
        frame_timeout_s: Annotated[
            float | None, Form(gt=0, description="Stop and move a frame that makes no progress this long")
        ] = None,
        memory_limit_mb: Annotated[
            float | None, Form(gt=0, description="Stop a frame whose Blender uses more memory than this")
        ] = None,
    ) -> dict[str, str]:
        upload, task_id = service.init_new_task(Path(file.filename or "").name)
        try:
            copy_stream(file.file, upload, service.max_upload_bytes)
        except ValueError as exc:
            service.cancel(task_id)
            raise ApiError(413, f"the upload is too large: {exc}") from exc
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
        )
        service.run_task(task_id, options)
        return {"task_key": task_id}

    @router.get("/render-tasks/{task_key}/", summary="Every field of a task")
    def get_task(task_key: str) -> dict[str, Any]:
        return service.task(task_key)

    @router.get("/render-tasks/{task_key}/progress/", summary="Stage and progress")
    def progress(task_key: str) -> dict[str, Any]:
        return _progress_json(service, task_key)

    @router.get("/render-tasks/{task_key}/frames/", summary="Every frame's state and agent")
    def frames(task_key: str) -> list[dict[str, Any]]:
        return service.frames(task_key)

    @router.get("/render-tasks/{task_key}/events/", summary="The task's log, with Blender's own error text")
    def events(task_key: str) -> list[dict[str, Any]]:
        return service.events(task_key)

    @router.get(
        "/render-tasks/{task_key}/download/",
        summary="The result: the video, or a zip of the frames (409 until finished)",
        response_class=FileResponse,
    )
    def download(task_key: str) -> FileResponse:
        path = service.result_file(task_key)
        task = service.task(task_key)
        stem = Path(task["original_name"] or "render").stem
        return FileResponse(path, media_type="application/octet-stream", filename=f"{stem}{path.suffix}")

    @router.post("/render-tasks/{task_key}/cancel/", summary="Cancel a task")
    def cancel(task_key: str) -> dict[str, Any]:
        service.cancel(task_key)
        return service.task(task_key)

    @router.post("/render-tasks/{task_key}/pause/", summary="Pause: frames being rendered finish, no new ones start")
    def pause(task_key: str) -> dict[str, Any]:
        service.pause(task_key)
        return service.task(task_key)

    @router.post("/render-tasks/{task_key}/resume/", summary="Resume a paused task")
    def resume(task_key: str) -> dict[str, Any]:
        service.resume(task_key)
        return service.task(task_key)

    @router.post("/render-tasks/{task_key}/retry/", summary="Render a failed task's failed frames again")
    def retry(task_key: str) -> dict[str, Any]:
        service.retry(task_key)
        return service.task(task_key)

    @router.post("/render-tasks/{task_key}/priority/", summary="Change a task's priority")
    def priority(task_key: str, value: Annotated[int, Form()]) -> dict[str, Any]:
        service.set_priority(task_key, value)
        return service.task(task_key)

    @router.get("/agents/", summary="Every agent the manager knows")
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

    @router.post("/agents/{agent_id}/enable/", summary="Let an agent take work")
    def enable(agent_id: str) -> dict[str, bool]:
        service.set_agent_enabled(agent_id, True)
        return {"enabled": True}

    @router.post("/agents/{agent_id}/disable/", summary="Give an agent no more work")
    def disable(agent_id: str) -> dict[str, bool]:
        service.set_agent_enabled(agent_id, False)
        return {"enabled": False}

    return router


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from exc


def _agent_router(service: FarmService) -> APIRouter:
    router = APIRouter(tags=["agents"])

    def parse(cls: type[_M], data: Any) -> _M:
        try:
            return cls.from_dict(data)
        except p.ProtocolError as exc:
            raise ApiError(400, str(exc)) from exc

    @router.post(p.MANAGER_HELLO, summary="An agent introduces itself")
    async def hello(request: Request) -> dict[str, Any]:
        info = parse(p.AgentInfo, await _json(request))
        if info.protocol != p.PROTOCOL_VERSION:
            raise ApiError(409, f"protocol {info.protocol} is not {p.PROTOCOL_VERSION}: update the agent")
        host = request.client.host if request.client else None
        service.hello(info, host)
        return {"heartbeat_interval_s": p.HEARTBEAT_INTERVAL_S, "protocol": p.PROTOCOL_VERSION}

    @router.post(p.MANAGER_HEARTBEAT, summary="An agent's progress; the reply says what to abandon")
    async def heartbeat(request: Request) -> dict[str, Any]:
        beat = parse(p.Heartbeat, await _json(request))
        return service.heartbeat(beat).to_dict()

    @router.post(p.MANAGER_WORK, summary="An agent asks for frames (204: nothing to do)")
    async def work(request: Request) -> Response:
        req = parse(p.WorkRequest, await _json(request))
        assignment = service.request_work(req)
        if assignment is None:
            return Response(status_code=204)
        return JSONResponse(assignment.to_dict())

    @router.get(p.MANAGER_FILE, summary="A task's file, by its sha256", response_class=FileResponse)
    def file(sha256: str) -> FileResponse:
        return FileResponse(service.file_for(sha256), media_type="application/octet-stream")

    @router.put(p.MANAGER_FRAME, summary="Upload a rendered frame (the body is the image file)")
    async def frame(
        task_id: str,
        frame: int,
        request: Request,
        agent_id: Annotated[str, Header(alias=p.HEADER_AGENT_ID)],
        sha256: Annotated[str, Header(alias=p.HEADER_SHA256)],
        seconds: Annotated[float, Header(alias=p.HEADER_RENDER_SECONDS)],
        extension: Annotated[str, Header(alias=p.HEADER_EXTENSION)],
        attempt: Annotated[str | None, Header(alias=p.HEADER_ATTEMPT)] = None,
    ) -> dict[str, Any]:
        tmp_dir = service.storage.task_dir(task_id)
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=tmp_dir, prefix=".upload-", delete=False) as out:
            received = Path(out.name)
            try:
                async for chunk in request.stream():
                    digest.update(chunk)
                    out.write(chunk)
            except BaseException:
                received.unlink(missing_ok=True)
                raise
        if digest.hexdigest() != sha256.lower():
            received.unlink(missing_ok=True)
            raise ApiError(400, "the frame's sha256 does not match its bytes (damaged in transit)")
        return service.accept_frame(
            task_id, frame, agent_id, attempt, received, sha256.lower(), seconds, extension
        ).to_dict()

    @router.post(p.MANAGER_FRAME_FAILED, summary="An agent could not render a frame")
    async def frame_failed(task_id: str, frame: int, request: Request) -> dict[str, str]:
        failure = parse(p.FrameFailure, await _json(request))
        outcome = service.frame_failed(task_id, frame, failure)
        return {"outcome": outcome.value}

    return router
