"""The manager's pairing endpoints: ask an unpaired agent, show the code, confirm, revoke.

Part of the manager's API (behind the farm token like the rest); ``api.create_app`` includes it when
the manager links to agents.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Form
from pydantic import BaseModel

from .links import AgentLinks, PairingFailed, PairingOffer
from .service import Conflict, NotFound


class PairingBody(BaseModel):
    pairing: str
    """The agent's id: confirm with ``POST /api/agents/pair/{pairing}/confirm/``."""
    code: str
    """Compare it with the code the agent shows before confirming."""
    name: str
    host: str
    port: int


class PairedBody(BaseModel):
    paired: bool


def pairing_router(links: AgentLinks, errors: Any) -> APIRouter:
    router = APIRouter(prefix="/api/agents", tags=["pairing"])
    offers: dict[str, PairingOffer] = {}
    lock = threading.Lock()

    @router.post(
        "/pair/",
        summary="Ask an unpaired agent to pair; returns the code to compare with the agent's",
        response_model=PairingBody,
        responses=errors(409, 422),
    )
    def start(host: Annotated[str, Form(max_length=255)], port: Annotated[int, Form(ge=1, le=65535)]) -> PairingBody:
        try:
            offer = links.start_pairing(host, port)
        except PairingFailed as exc:
            raise Conflict(str(exc)) from exc
        with lock:
            offers[offer.agent_id] = offer
        return PairingBody(pairing=offer.agent_id, code=offer.code, name=offer.name, host=host, port=port)

    @router.post(
        "/pair/{pairing}/confirm/",
        summary="The codes match: give the agent the farm token",
        response_model=PairedBody,
        responses=errors(404, 409, 422),
    )
    def confirm(pairing: str) -> PairedBody:
        with lock:
            offer = offers.pop(pairing, None)
        if offer is None:
            raise NotFound(f"no pairing {pairing} is waiting")
        try:
            links.finish_pairing(offer)
        except PairingFailed as exc:
            raise Conflict(str(exc)) from exc
        return PairedBody(paired=True)

    @router.post(
        "/revoke/",
        summary="Make a paired agent forget the farm token",
        response_model=PairedBody,
        responses=errors(409, 422),
    )
    def revoke(host: Annotated[str, Form(max_length=255)], port: Annotated[int, Form(ge=1, le=65535)]) -> PairedBody:
        from .service import Conflict

        try:
            links.revoke(host, port)
        except PairingFailed as exc:
            raise Conflict(str(exc)) from exc
        return PairedBody(paired=False)

    return router
