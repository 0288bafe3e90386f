"""Signed, expiring URLs for the images the gateway serves itself (thumbnails, folder originals).

With API_REQUIRE_KEY_FOR_READS a browser's <img> cannot send the X-API-Key header, so a result's
`thumbnail_url` (and a folder photo's `photo_image_url`) carries `expires` and `signature` query
parameters instead: an HMAC-SHA256, with the gateway's secret, of the path and the expiry. Such a URL
loads without a key until it expires; one that was changed, or signed with another secret, is refused
with 403 and a sentence, as is an expired one. When reads need no key, results keep plain paths and the
parameters are not checked (an old signed link then still loads).

The secret is API_URL_SIGNING_KEY; unset, it is derived from API_KEYS. Several gateways behind one
address must accept each other's URLs (a page's search and its thumbnails may reach different ones),
and they share API_KEYS already, so each derives the same secret with no new setting to keep in step.
Knowing the derived secret is no more than knowing the keys: anyone with a key may read anyway, and
the keys cannot be recovered from it or from a signature (HMAC is one-way). Changing API_KEYS changes
the secret and so ends the links already given, which is what rotating a leaked key should do. With
no API_KEYS at all, reads that need a key are refused anyway and no URL is signed; the process then
signs with a random secret of its own, which nothing ever has to verify.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from services.api.config import ApiSettings
from services.api.deps import ApiKeyDep, SettingsDep, require_read_key
from services.api.query import photo_path
from services.common.errors import ServiceError

PHOTO_PATHS = "/v1/photos/"
NOT_SIGNED = ("This image link is not one this gateway signed, or it was changed: use a result's thumbnail_url or "
              "photo_image_url as given, or send an API key in the X-API-Key header.")
EXPIRED = ("This image link has expired: search again for fresh links, or send an API key in the X-API-Key "
           "header.")


class Forbidden(ServiceError):
    status_code = 403
    code = "invalid_signature"


def signing_key(settings: ApiSettings) -> bytes:
    """API_URL_SIGNING_KEY, else a secret derived from API_KEYS (the module docstring says why that is safe
    across gateways), else a random one for this process."""
    if settings.url_signing_key:
        return settings.url_signing_key.encode()
    keys = settings.api_key_list
    if keys:
        # Sorted: the order the keys are listed in does not change the secret.
        return hmac.new("\n".join(sorted(keys)).encode(), b"imagesearch signed image urls v1", hashlib.sha256).digest()
    return secrets.token_bytes(32)


class UrlSigner:
    """Signs gateway paths and checks signed ones. An expiry is rounded up to a whole `ttl_s` window, so the
    same photo gets the same URL for a while and browsers can cache its thumbnail; a URL is therefore valid
    for between `ttl_s` and twice that."""

    def __init__(self, key: bytes, ttl_s: int):
        self._key = key
        self.ttl_s = ttl_s

    def _signature(self, path: str, expires: int) -> str:
        digest = hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, path: str, now: float | None = None) -> str:
        now = time.time() if now is None else now
        expires = (int(now) // self.ttl_s + 2) * self.ttl_s
        return f"{path}?expires={expires}&signature={self._signature(path, expires)}"

    def check(self, path: str, expires: str | None, signature: str | None, now: float | None = None) -> None:
        """Nothing if `path` was signed by this secret until `expires`, still ahead; else Forbidden."""
        if not expires or not expires.isdigit() or not signature:
            raise Forbidden(NOT_SIGNED)
        # The signature first: a changed expiry is a changed link, not an expired one.
        if not hmac.compare_digest(signature.encode(), self._signature(path, int(expires)).encode()):
            raise Forbidden(NOT_SIGNED)
        if int(expires) < (time.time() if now is None else now):
            raise Forbidden(EXPIRED, code="link_expired")


def build_signer(settings: ApiSettings) -> UrlSigner:
    return UrlSigner(signing_key(settings), settings.signed_url_ttl_s)


def sign_urls(result: dict[str, Any], request: Request) -> dict[str, Any]:
    """A shaped result (or photo) with its gateway paths signed, when reads need a key; as it was otherwise."""
    if request.app.state.settings.require_key_for_reads:
        signer: UrlSigner = request.app.state.url_signer
        for field in ("thumbnail_url", "photo_image_url"):
            url = result.get(field)
            if isinstance(url, str) and url.startswith(PHOTO_PATHS):
                result[field] = signer.sign(url)
    return result


def read_key_or_signature(kind: str):
    """The dependency of a route serving `kind` (thumbnail, original) of a photo: the read key as for every
    read, or, when reads need a key and none is sent, a valid signature of this very path."""

    async def dependency(
        request: Request, settings: SettingsDep, photo_id: str, api_key: ApiKeyDep = None,
        expires: Annotated[str | None, Query(description="A signed URL's expiry (Unix time), as the gateway gave it.")] = None,
        signature: Annotated[str | None, Query(description="A signed URL's signature, as the gateway gave it.")] = None,
    ) -> None:
        if settings.require_key_for_reads and not api_key and (expires is not None or signature is not None):
            request.app.state.url_signer.check(photo_path(photo_id, kind), expires, signature)
            # Counted by address, as any read without a key.
            await request.app.state.rate_limits.check(False, None, request.client.host if request.client else None)
            return
        await require_read_key(request, settings, api_key)

    return Depends(dependency)
