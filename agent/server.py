"""The agent's HTTP face (FastAPI): who it is, attach to a manager, pause and resume.

Every endpoint needs the farm token. An agent started without one answers 401 to everything: the
manager then lists it as unpaired.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from . import protocol as p
from .service import AgentCore

_bearer = HTTPBearer(auto_error=False, description="The farm token.")


class _Unauthorized(Exception):
    pass


def create_agent_app(core: AgentCore) -> FastAPI:
    import hmac

    def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        token = core.config.token
        if token is None or credentials is None:
            raise _Unauthorized
        if not hmac.compare_digest(token.encode(), credentials.credentials.encode()):
            raise _Unauthorized

    app = FastAPI(
        title="Frameherd agent",
        version=str(p.PROTOCOL_VERSION),
        dependencies=[Depends(authorized)],
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(_Unauthorized)
    async def _unauthorized(_: Request, __: _Unauthorized) -> JSONResponse:
        return JSONResponse(
            {"error": "missing or wrong farm token"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    @app.exception_handler(p.ProtocolError)
    async def _bad(_: Request, exc: p.ProtocolError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get(p.AGENT_INFO, summary="Who this agent is and what it can render")
    def info() -> dict[str, Any]:
        return core.info().to_dict()

    @app.post(p.AGENT_ATTACH, summary="Work for this manager")
    async def attach(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError as exc:  # json.JSONDecodeError: not JSON at all
            raise p.ProtocolError(f"the body is not JSON: {exc}") from exc
        core.attach(p.AttachRequest.from_dict(body))
        return core.info().to_dict()

    @app.post(p.AGENT_DETACH, summary="Stop working for the manager")
    def detach() -> dict[str, Any]:
        core.detach()
        return core.info().to_dict()

    @app.post(p.AGENT_PAUSE, summary="Finish the current frame, take no new work")
    def pause() -> dict[str, Any]:
        core.pause()
        return core.info().to_dict()

    @app.post(p.AGENT_RESUME, summary="Take work again")
    def resume() -> dict[str, Any]:
        core.resume()
        return core.info().to_dict()

    return app
