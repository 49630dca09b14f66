"""Helpers for the Connect, Pick-Up and inbound HTTP tests: a signed-in patient calling the
patient API (JSON with the CSRF header), and an app calling the app API with its token."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from records_bridge.oauth.clients import NewClient
from records_bridge.people import Person
from tests.bridge_fixtures import PASSWORD, Bridge, Browser

DAY = 86400


@dataclass
class Patient:
    bridge: Bridge
    browser: Browser
    person: Person
    record_id: int
    csrf: str

    async def call(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with await self.browser.post(path, json=body, headers={"X-CSRF-Token": self.csrf}) as r:
            return r.status, await r.json()

    async def sign_in_again(self) -> None:
        """Sessions last 12 hours; tests that move the clock by days sign in again."""
        async with await self.browser.sign_in(self.person.email or "", PASSWORD) as r:
            assert r.status == 303
        self.csrf = await self.browser.csrf("/connect")


async def patient(bridge: Bridge) -> Patient:
    browser, person, record_id = await bridge.signed_in()
    return Patient(bridge, browser, person, record_id, await browser.csrf("/connect"))


@dataclass
class App:
    bridge: Bridge
    client: NewClient
    scopes: tuple[str, ...]
    token: str

    @property
    def client_id(self) -> str:
        return self.client.client.client_id

    async def renew(self) -> None:
        """Client tokens live 10 minutes; tests that move the clock by days get a new one."""
        self.token = await self.bridge.client_token(self.client, self.scopes)

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            # a BytesIO: aiohttp warns that large raw bodies block the loop (packages are tens of MiB)
            data, headers["Content-Type"] = io.BytesIO(json.dumps(body).encode()), "application/json"
        async with aiohttp.ClientSession() as http, http.request(
            method, self.bridge.url(path), data=data, headers=headers,
        ) as r:
            text = await r.text()
            return r.status, (await r.json() if text and r.content_type == "application/json" else text or None)


async def app(bridge: Bridge, *scopes: str, **spec: Any) -> App:
    spec.setdefault("connect", "connect" in scopes)
    client = await bridge.client("Clinic app", scopes=tuple(s for s in scopes if s != "connect") or ("records.*.r",),
                                 **spec)
    return App(bridge, client, scopes, await bridge.client_token(client, scopes))


async def connect_request(app_: App, external_id: str = "patient-42", answer: str = "Fluffy",
                          question: str = "Your first pet's name?") -> tuple[int, dict[str, Any]]:
    return await app_.call("POST", "/v1/connect-requests", {
        "external_id": external_id, "friendly_name": "Dr Smith's clinic", "question": question, "answer": answer,
    })
