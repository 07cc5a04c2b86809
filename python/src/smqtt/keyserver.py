"""The key server's HTTPS API, with the standard library only (http.client + ssl).

TLS is verified against the deployment CA given (pinned; the system store is not used), and
every call but enrollment is signed with the principal's Ed25519 key (documents.sign_request).
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

from .documents import Identity, parse_json, sign_request
from .errors import SmqttError, is_error_code

log = logging.getLogger("smqtt.keyserver")


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: Any


class KeyServerClient:
    """Example::

        ks = KeyServerClient("https://keys.example:8443", ca_file="ca.pem", identity=identity)
        signed_bundle, tag = ks.bundle()
    """

    def __init__(
        self,
        url: str,
        *,
        ca_file: str | None = None,
        ca_data: str | None = None,
        identity: Identity | None = None,
        timeout: float = 10.0,
        client_cert: tuple[str, str] | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "https" or not parsed.hostname:
            raise ValueError("the key server URL must be https://host[:port][/path]")
        self.url = url
        self._host = parsed.hostname
        self._port = parsed.port or 443
        self._base = parsed.path.rstrip("/")
        self._identity = identity
        self._timeout = timeout
        if ca_file is None and ca_data is None:
            self._context = ssl.create_default_context()
        else:
            # Pinned: only the deployment CA, not the system's roots.
            self._context = ssl.create_default_context(cafile=ca_file, cadata=ca_data)
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        if client_cert is not None:
            self._context.load_cert_chain(*client_cert)

    def with_identity(self, identity: Identity) -> KeyServerClient:
        other = object.__new__(KeyServerClient)
        other.__dict__.update(self.__dict__)
        other._identity = identity
        return other

    def exchange(
        self, method: str, path: str, body: Any = None, *, signed: bool = True, headers: dict[str, str] | None = None
    ) -> Response:
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
        full_path = self._base + path
        all_headers = {"accept": "application/json", **(headers or {})}
        if body is not None:
            all_headers["content-type"] = "application/json"
        if signed:
            if self._identity is None:
                raise TypeError("signed key server requests need an identity")
            all_headers.update(
                sign_request(self._identity.id, self._identity.signing_seed, method=method, path=full_path, body=raw)
            )
        connection = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._context)
        try:
            connection.request(method, full_path, body=raw if body is not None else None, headers=all_headers)
            response = connection.getresponse()
            text = response.read(4 * 1024 * 1024 + 1)
            response_headers = {k.lower(): v for k, v in response.getheaders()}
            status = response.status
        finally:
            connection.close()
        parsed: Any = None
        if text:
            try:
                parsed = parse_json(text.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                parsed = None
        return Response(status, response_headers, parsed)

    def _ok(self, response: Response) -> Any:
        if response.status == 200:
            return response.body
        error = response.body.get("error") if isinstance(response.body, dict) else None
        message = f"key server answered {response.status}"
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message += f": {error['message']}"
        code = error.get("code") if isinstance(error, dict) else None
        if is_error_code(code):
            raise SmqttError(code, message)
        raise OSError(message)

    def request(self, method: str, path: str, body: Any = None, *, signed: bool = True) -> Any:
        return self._ok(self.exchange(method, path, body, signed=signed))

    # --- the device API ---

    def enroll(self, request: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/enroll`` (unsigned: the body carries its own proof of possession)."""
        result = self.request("POST", "/v1/enroll", request, signed=False)
        if (
            not isinstance(result, dict)
            or not isinstance(result.get("kid"), int)
            or not isinstance(result.get("keyServerPublicKey"), str)
            or not isinstance(result.get("principal"), dict)
        ):
            raise SmqttError("ERR_IDENTITY_MALFORMED", "the key server sent a malformed enrollment response")
        return result

    def bundle(self) -> tuple[Any, str | None]:
        """``GET /v1/bundle``: (signed bundle, tag)."""
        body = self.request("GET", "/v1/bundle")
        body = body if isinstance(body, dict) else {}
        tag = body.get("tag")
        return body.get("bundle"), tag if isinstance(tag, str) else None

    def revocations(self) -> Any:
        """``GET /v1/revocations``: the signed list, or None when there is none."""
        body = self.request("GET", "/v1/revocations")
        return body.get("revocations") if isinstance(body, dict) else None

    def freshness(self, etag: str | None = None) -> tuple[int, str, str | None] | None:
        """``GET /v1/freshness``: (revocation list version, bundle tag, ETag), None when unchanged."""
        response = self.exchange("GET", "/v1/freshness", headers={} if etag is None else {"if-none-match": etag})
        if response.status == 304:
            return None
        body = self._ok(response)
        if not isinstance(body, dict) or not isinstance(body.get("revocations"), int) or not isinstance(body.get("bundle"), str):
            raise OSError("the key server sent a malformed freshness answer")
        return body["revocations"], body["bundle"], response.headers.get("etag")

    def reserve_sequence(self, at_least: int, size: int) -> tuple[int, int]:
        """``POST /v1/sequence``: a range [start, end) above ``at_least`` and every earlier range."""
        body = self.request("POST", "/v1/sequence", {"atLeast": at_least, "size": size})
        start = body.get("start") if isinstance(body, dict) else None
        end = body.get("end") if isinstance(body, dict) else None
        if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool) or isinstance(end, bool):
            raise SmqttError("ERR_REQUEST_INVALID", "the key server sent a malformed sequence range")
        return start, end

    def writers(self, group: int, kids: list[int]) -> Any:
        """``POST /v1/writers``: a signed writer record for senders the bundle does not list."""
        body = self.request("POST", "/v1/writers", {"group": group, "kids": kids})
        return body.get("record") if isinstance(body, dict) else None
