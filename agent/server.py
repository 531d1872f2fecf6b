"""The agent's HTTP face (FastAPI): who it is, attach to a manager, pause and resume, pairing.

Every endpoint needs the farm token, except the two pairing steps (see ``pairing.py``): an agent
started without a token answers 401 to everything else, and the manager lists it as unpaired.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from . import protocol as p
from .pairing import Pairing, PairingError
from .service import AgentCore

_bearer = HTTPBearer(auto_error=False, description="The farm token.")


class _Unauthorized(Exception):
    pass


def memory_pairing(core: AgentCore) -> Pairing:
    """Pairing that keeps the token in the agent's config only (tests; ``__main__`` also saves it)."""

    def set_token(token: str | None) -> None:
        core.config.token = token

    def set_cert(cert: str | None) -> None:
        core.config.manager_cert = cert

    return Pairing(core.agent_id, lambda: core.config.token, set_token, set_cert=set_cert)


def create_agent_app(core: AgentCore, pairing: Pairing | None = None) -> FastAPI:
    import hmac

    pairing = pairing or memory_pairing(core)

    def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        token = core.config.token
        if token is None or credentials is None:
            raise _Unauthorized
        if not hmac.compare_digest(token.encode(), credentials.credentials.encode()):
            raise _Unauthorized

    app = FastAPI(
        title="Frameherd agent",
        version=str(p.PROTOCOL_VERSION),
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

    @app.exception_handler(PairingError)
    async def _pairing(_: Request, exc: PairingError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def json_body(request: Request) -> Any:
        try:
            return await request.json()
        except ValueError as exc:  # json.JSONDecodeError: not JSON at all
            raise p.ProtocolError(f"the body is not JSON: {exc}") from exc

    # Pairing needs no token: it is how an agent without one gets it (see pairing.py for the rules).
    open_router = APIRouter(tags=["pairing"])

    @open_router.post(p.AGENT_PAIR_START, summary="A manager asks to pair (only an unpaired agent answers)")
    async def pair_start(request: Request) -> dict[str, Any]:
        ask = p.PairStart.from_dict(await json_body(request))
        nonce, _code = pairing.start(ask.manager_id, ask.manager_nonce, ask.manager_cert_sha256)
        return p.PairStarted(core.agent_id, core.config.name, nonce).to_dict()

    @open_router.post(p.AGENT_PAIR_FINISH, summary="The manager sends the farm token after the user approved")
    async def pair_finish(request: Request) -> dict[str, Any]:
        done = p.PairFinish.from_dict(await json_body(request))
        pairing.finish(done.manager_id, done.agent_nonce, done.token, done.manager_cert)
        return core.info().to_dict()

    app.include_router(open_router)
    router = APIRouter(dependencies=[Depends(authorized)])

    @router.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @router.post(p.AGENT_UNPAIR, summary="Forget the farm token (revoke this agent)")
    def unpair() -> dict[str, Any]:
        core.detach()
        pairing.unpair()
        return core.info().to_dict()

    @router.get(p.AGENT_INFO, summary="Who this agent is and what it can render")
    def info() -> dict[str, Any]:
        return core.info().to_dict()

    @router.post(p.AGENT_ATTACH, summary="Work for this manager")
    async def attach(request: Request) -> dict[str, Any]:
        core.attach(p.AttachRequest.from_dict(await json_body(request)))
        return core.info().to_dict()

    @router.post(p.AGENT_DETACH, summary="Stop working for the manager")
    def detach() -> dict[str, Any]:
        core.detach()
        return core.info().to_dict()

    @router.post(p.AGENT_PAUSE, summary="Finish the current frame, take no new work")
    def pause() -> dict[str, Any]:
        core.pause()
        return core.info().to_dict()

    @router.post(p.AGENT_RESUME, summary="Take work again")
    def resume() -> dict[str, Any]:
        core.resume()
        return core.info().to_dict()

    app.include_router(router)
    return app
