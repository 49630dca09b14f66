#!/usr/bin/env python3
"""A small app of the records bridge: sign the patient in through the system
browser, then list the documents of the record they chose.

It is a native app in the sense of RFC 8252: a public client (no secret),
the authorization code flow with PKCE S256 (RFC 7636), and a loopback
redirect (``http://127.0.0.1:{port}/callback``, RFC 8252 section 7.3: the
app listens on an ephemeral port of 127.0.0.1 for the one redirect, and the
bridge accepts any port for a loopback URI registered without one). The
browser is the system browser (``webbrowser``), never an embedded view
(RFC 8252 section 8.12).

Register it once, then run it::

    directgw clients add "Records example" --public \\
        --redirect-uri http://127.0.0.1/callback --scopes patient/DocumentReference.rs launch/patient
    python examples/records_app.py --bridge https://records.example --client-id CLIENT_ID

It needs only aiohttp (already a dependency of directgw). ``run`` is the
whole flow as one function; the test suite calls it with the browser step
replaced by an HTTP client that signs in and consents through the real pages.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import secrets
import socket
import sys
import webbrowser
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

SCOPE = "patient/DocumentReference.rs launch/patient"
CALLBACK_PATH = "/callback"
WAIT_SECONDS = 300
"""How long the app waits for the person to finish in the browser."""


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    type: str
    date: str
    content_type: str
    size: int
    url: str


class FlowError(Exception):
    """The authorization did not end with a token (denied, state mismatch, bridge error)."""


def pkce() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), RFC 7636 sections 4.1 and 4.2."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


async def _wait_for_redirect() -> tuple[str, asyncio.Future[dict[str, str]], web.AppRunner]:
    """A one-shot loopback server; returns (redirect_uri, the redirect's query, runner)."""
    got: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    async def callback(request: web.Request) -> web.Response:
        if not got.done():
            got.set_result(dict(request.query))
        return web.Response(text="You can close this window and return to the app.")

    app = web.Application()
    app.router.add_get(CALLBACK_PATH, callback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # an ephemeral port on the loopback interface only (RFC 8252 7.3, 8.3)
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    return f"http://127.0.0.1:{port}{CALLBACK_PATH}", got, runner


async def authorize(bridge: str, client_id: str, open_browser: Callable[[str], Awaitable[None]],
                    scope: str = SCOPE) -> dict[str, Any]:
    """The token response, after the person signed in and allowed the app in their browser."""
    state = secrets.token_urlsafe(16)
    verifier, challenge = pkce()
    redirect_uri, got, runner = await _wait_for_redirect()
    try:
        query = urlencode({
            "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scope,
            "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
        })
        await open_browser(f"{bridge}/oauth/authorize?{query}")
        answer = await asyncio.wait_for(got, WAIT_SECONDS)
    finally:
        await runner.cleanup()
    if answer.get("state") != state:
        raise FlowError("the redirect's state is not ours: ignoring it (possible CSRF)")
    if "error" in answer:
        raise FlowError(f"not authorized: {answer['error']}")
    async with aiohttp.ClientSession() as http, http.post(f"{bridge}/oauth/token", data={
        "grant_type": "authorization_code", "code": answer.get("code", ""), "redirect_uri": redirect_uri,
        "code_verifier": verifier, "client_id": client_id,
    }) as r:
        token: dict[str, Any] = await r.json()
        if r.status != 200:
            raise FlowError(f"token request refused: {token.get('error')}: {token.get('error_description')}")
    return token


async def documents(bridge: str, token: dict[str, Any]) -> list[Document]:
    """Every DocumentReference of the chosen record (the token's ``patient``), following ``next`` links."""
    headers = {"Authorization": f"Bearer {token['access_token']}", "Accept": "application/fhir+json"}
    url: str | None = f"{bridge}/fhir/r4/DocumentReference?patient={token['patient']}"
    found: list[Document] = []
    async with aiohttp.ClientSession(headers=headers) as http:
        while url:
            async with http.get(url) as r:
                bundle = await r.json(content_type=None)
                if r.status != 200:
                    raise FlowError(f"search refused: {bundle}")
            for entry in bundle.get("entry", []):
                ref = entry["resource"]
                attachment = ref["content"][0]["attachment"]
                found.append(Document(
                    id=ref["id"], title=attachment.get("title", ""), type=ref["type"]["coding"][0]["display"],
                    date=ref.get("date", ""), content_type=attachment.get("contentType", ""),
                    size=int(attachment.get("size", 0)), url=bridge + attachment["url"],
                ))
            url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
    return found


async def run(bridge: str, client_id: str, open_browser: Callable[[str], Awaitable[None]]) -> list[Document]:
    return await documents(bridge, await authorize(bridge.rstrip("/"), client_id, open_browser))


async def system_browser(url: str) -> None:
    print(f"Opening your browser to sign in; if it does not open, visit:\n  {url}", file=sys.stderr)
    await asyncio.to_thread(webbrowser.open, url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="List the documents of a record through the records bridge.")
    parser.add_argument("--bridge", required=True, help="the bridge's base URL, e.g. https://records.example")
    parser.add_argument("--client-id", required=True, help="this app's client id (a public client)")
    args = parser.parse_args(argv)
    try:
        found = asyncio.run(run(args.bridge.rstrip("/"), args.client_id, system_browser))
    except (FlowError, aiohttp.ClientError, TimeoutError) as exc:
        print(f"records_app: {exc}", file=sys.stderr)
        return 1
    if not found:
        print("no documents in this record")
    for d in found:
        print(f"{d.date[:10]}  {d.type:<32}  {d.title}  ({d.content_type}, {d.size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
