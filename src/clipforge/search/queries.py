"""Parsing a search request, from JSON or a multipart upload, into one validated :class:`Query`.

Everything a client can get wrong is caught here and raised as an :class:`ApiError` carrying the
HTTP status and a message that names the field, so the server answers a bad request with a 4xx
and a JSON body saying what to fix, never a 500. Statuses: 400 unreadable body (bad JSON, bad
base64), 413 too large, 415 not JSON/multipart or an upload that is not an image, 422 a readable
request that asks for something invalid.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clipforge.transforms import ImageDecodeError, load_image

QUERY_KINDS: tuple[str, ...] = ("text", "image", "embedding", "id")


class ApiError(Exception):
    """A client error: answered as ``status`` with ``{"error": message, "detail": detail}``."""

    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


class SearchRequest(BaseModel):
    """The body of ``POST /search``: exactly one of ``text``, ``image``, ``embedding``, ``id``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    index: str | None = Field(None, description="index name; optional when one is served")
    text: str | None = Field(None, description="text query")
    image: str | None = Field(None, description="base64 image bytes (a data: URL also works)")
    embedding: list[float] | None = Field(None, description="query vector of the index's width")
    id: int | None = Field(None, description="search by the stored vector of this item")
    k: int | None = Field(None, description="number of results; default from the server config")
    dedup: bool = Field(False, description="drop near-duplicates of higher-ranked results")


@dataclass(frozen=True)
class Query:
    """A request whose fields have valid types and exactly one query kind.

    ``value`` is the text, the decoded image, the embedding (a list of floats) or the id.
    """

    kind: str
    value: Any
    index: str | None
    k: int | None
    dedup: bool
    info: dict[str, Any] = field(default_factory=dict)


def parse_json_body(body: bytes, max_image_bytes: int) -> Query:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"malformed JSON body: {err}") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the JSON body must be an object, got {type(data).__name__}")
    return _to_query(_validated(data), None, max_image_bytes)


def parse_form(form: dict[str, Any], upload: bytes | None, max_image_bytes: int) -> Query:
    """A multipart request: text fields as strings (``k``, ``dedup``, ``id`` converted here,
    ``embedding`` as a JSON list) and the uploaded ``image`` file's bytes."""
    data: dict[str, Any] = dict(form)
    converters = {"k": int, "id": int, "dedup": _form_bool, "embedding": json.loads}
    for name, convert in converters.items():
        if name in data:
            try:
                data[name] = convert(data[name])
            except ValueError as err:
                raise ApiError(422, f"form field {name!r}={data[name]!r}: {err}",
                               {"field": name}) from None  # fmt: skip
    if "image" in data:
        raise ApiError(422, "send the image as a file part named 'image', not as a text field",
                       {"field": "image"})  # fmt: skip
    return _to_query(_validated(data), upload, max_image_bytes)


def _form_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _validated(data: dict[str, Any]) -> SearchRequest:
    try:
        return SearchRequest.model_validate(data)
    except ValidationError as err:
        raise validation_error("search request", err.errors(include_url=False)) from None


def validation_error(what: str, errors: Sequence[Any]) -> ApiError:
    """A 422 naming each field pydantic (or FastAPI) rejected, with its reason."""
    problems = [
        {"field": ".".join(str(part) for part in e["loc"]), "message": e["msg"]} for e in errors
    ]
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    return ApiError(422, f"invalid {what}: {summary}", problems)


def _to_query(request: SearchRequest, upload: bytes | None, max_image_bytes: int) -> Query:
    given = [kind for kind in QUERY_KINDS if getattr(request, kind) is not None]
    if upload is not None:
        given.append("image")
    if len(given) != 1:
        found = f"got {' and '.join(given)}" if given else "got none"
        raise ApiError(422, f"give exactly one of {', '.join(QUERY_KINDS)}; {found}",
                       {"query_kinds": given})  # fmt: skip
    kind = given[0]
    info: dict[str, Any] = {}
    if kind == "text":
        value: Any = request.text
        if not value.strip():
            raise ApiError(422, "text is empty", {"field": "text"})
        info["text"] = value
    elif kind == "image":
        data = upload if upload is not None else _decode_base64(request.image or "")
        value = decode_image(data, max_image_bytes)
        info.update(image_bytes=len(data), image_size=list(value.size))
    elif kind == "embedding":
        value = _checked_embedding(request.embedding or [])
        info["embedding_dim"] = len(value)
    else:
        value = request.id
        info["id"] = value
    return Query(kind, value, request.index, request.k, request.dedup, info)


def _checked_embedding(values: list[float]) -> list[float]:
    if not values:
        raise ApiError(422, "embedding is empty", {"field": "embedding"})
    bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
    if bad:
        raise ApiError(422, f"embedding has non-finite values at positions {bad[:10]}",
                       {"field": "embedding"})  # fmt: skip
    if not any(values):
        raise ApiError(422, "embedding is all zeros: it has no direction to search",
                       {"field": "embedding"})  # fmt: skip
    return values


def _decode_base64(text: str) -> bytes:
    """Bytes of a base64 string or ``data:...;base64,`` URL; whitespace is ignored."""
    if text.startswith("data:"):
        _, sep, text = text.partition(",")
        if not sep:
            raise ApiError(
                400, "image: a data: URL without a ',' before its data", {"field": "image"}
            )
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ApiError(400, f"image is not valid base64 ({err})", {"field": "image"}) from None


def decode_image(data: bytes, max_image_bytes: int) -> Image.Image:
    if len(data) > max_image_bytes:
        raise too_large(len(data), max_image_bytes, "image")
    try:
        return load_image(data, name="uploaded image")
    except ImageDecodeError as err:
        raise ApiError(415, f"the uploaded file is not an image Pillow can read ({err})",
                       {"field": "image"}) from None  # fmt: skip


def too_large(size: int, limit: int, what: str) -> ApiError:
    return ApiError(
        413,
        f"{what} is {size} bytes, over the limit of {limit} bytes ({limit / 2**20:g} MiB)",
        {"limit_bytes": limit, "size_bytes": size},
    )
