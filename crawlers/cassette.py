"""One fixture format for every fetch path: vcrpy cassettes, read and written through vcrpy.

vcrpy patches ``http.client``/``requests``/``httpx`` but not Twisted (Scrapy) or a browser
(Playwright), so those paths go through :class:`CassetteBridge`, which drives a vcrpy
``Cassette`` by hand. The file it reads and writes is an ordinary vcrpy cassette (format
version 1, yaml serializer): a cassette recorded by Scrapy replays under
``vcr.use_cassette(path, record_mode="none")`` in ``requests``/``httpx`` and vice versa.

Modes:

* ``replay`` is vcrpy's record mode ``none``: nothing touches the network, an unmatched
  request raises :class:`CassetteMiss` with vcrpy's own explanation of the closest mismatch.
* ``record`` is vcrpy's ``new_episodes``: what the cassette already holds still plays, what it
  lacks is fetched live by the caller and appended, so re-recording into an existing file adds
  only the missing interactions.

Stored interactions are scrubbed by vcrpy's own filters, which vcrpy also applies to every
incoming request before matching and to every interaction it loads (``Cassette._load`` goes
through ``append``): request ``Cookie``/``Authorization`` headers (``filter_headers``), the
per-source volatile query parameters (``filter_query_parameters``), response ``Set-Cookie``
(a ``before_record_response`` hook). Bodies are stored identity-encoded
(``decode_compressed_response=True`` plus zstd, which Scrapy 2.19 always advertises).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import vcr
from vcr.cassette import Cassette
from vcr.errors import CannotOverwriteExistingCassetteException
from vcr.filters import AVAILABLE_DECOMPRESSORS
from vcr.record_mode import RecordMode
from vcr.request import Request as VcrRequest

try:  # zstd: stdlib from 3.14, the backport Scrapy 2.19 depends on before that.
    from compression import zstd as _zstd  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the interpreter
    try:
        from backports import zstd as _zstd  # type: ignore[import-not-found,no-redef]
    except ImportError:
        _zstd = None  # type: ignore[assignment]

Mode = Literal["replay", "record"]
HeaderInput = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]]

RECORD_MODES: dict[str, RecordMode] = {"replay": RecordMode.NONE, "record": RecordMode.NEW_EPISODES}
# "body" is matched for every method: a GET has no body on any client (requests, Scrapy via
# ``request.body or None``, Playwright's post_data_buffer give None, httpx's b"" is made None
# by a hook), so it only bites where a body exists (POST forms, JSON APIs), which vcrpy
# compares parsed (form fields, JSON), not byte for byte.
DEFAULT_MATCH_ON: tuple[str, ...] = ("method", "scheme", "host", "port", "path", "query", "body")
SECRET_REQUEST_HEADERS: tuple[str, ...] = ("cookie", "authorization")
SECRET_RESPONSE_HEADERS: frozenset[str] = frozenset({"set-cookie"})
# The stored body is complete and unchunked, so a recorded Transfer-Encoding would lie.
STALE_RESPONSE_HEADERS: frozenset[str] = frozenset({"transfer-encoding"})


class CassetteMiss(Exception):
    """A replay found no recorded interaction; ``explanation`` is vcrpy's own diagnosis."""

    def __init__(self, method: str, url: str, explanation: str) -> None:
        super().__init__(explanation)
        self.method = method
        self.url = url
        self.explanation = explanation


@dataclass(frozen=True)
class PlayedResponse:
    """A recorded response, framework-neutral: latin-1 header strings, body bytes as stored."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        """All values of one header (case-insensitive), in recorded order."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]


@dataclass
class CassetteBridge:
    """Plays and records vcrpy interactions for clients vcrpy cannot patch."""

    cassette: Cassette
    mode: Mode
    played: int = 0
    recorded: int = 0
    misses: list[CassetteMiss] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        mode: Mode = "replay",
        match_on: Sequence[str] | None = None,
        filter_query_parameters: Sequence[str] = (),
        allow_playback_repeats: bool = True,
    ) -> CassetteBridge:
        """Load ``path`` with vcrpy's merged config; a replay of a missing file fails early."""
        if mode not in RECORD_MODES:
            raise ValueError(f"cassette mode must be 'replay' or 'record', not {mode!r}")
        if mode == "replay" and not Path(path).is_file():
            raise FileNotFoundError(f"cassette to replay does not exist: {path}")
        options = vcr_options(match_on=match_on, filter_query_parameters=filter_query_parameters)
        config = vcr.VCR(record_mode=RECORD_MODES[mode], **options).get_merged_config(
            path=os.fspath(path), allow_playback_repeats=allow_playback_repeats
        )
        return cls(cassette=Cassette.load(**_cassette_kwargs(config)), mode=mode)

    @property
    def path(self) -> str:
        """Where the cassette is loaded from and saved to."""
        return os.fspath(self.cassette._path)

    def play(
        self,
        method: str,
        url: str,
        headers: HeaderInput | None = None,
        body: bytes | str | None = None,
    ) -> PlayedResponse | None:
        """The recorded response; None only in record mode, meaning "fetch live, then record"."""
        request = _vcr_request(method, url, headers, body)
        if self.cassette.can_play_response_for(request):
            self.played += 1
            return _played(self.cassette.play_response(request))
        if self.mode == "record":
            return None
        error = CannotOverwriteExistingCassetteException(
            cassette=self.cassette, failed_request=request
        )
        miss = CassetteMiss(method.upper(), url, str(error))
        self.misses.append(miss)
        raise miss

    def record(
        self,
        method: str,
        url: str,
        request_headers: HeaderInput | None,
        request_body: bytes | str | None,
        status: int,
        reason: str,
        response_headers: HeaderInput,
        body: bytes,
    ) -> None:
        """Append a live interaction; vcrpy's filters and hooks scrub it on the way in."""
        if self.mode != "record":
            raise RuntimeError(f"cassette {self.path} is open for replay, not recording")
        response = {
            "status": {"code": int(status), "message": reason or _phrase(status)},
            "headers": _header_lists(response_headers),
            "body": {"string": bytes(body)},
        }
        self.cassette.append(_vcr_request(method, url, request_headers, request_body), response)
        self.recorded += 1

    def save(self) -> None:
        """Write new interactions (record mode only; vcrpy skips the write when nothing changed)."""
        if self.mode == "record":
            self.cassette._save()  # private, but it is what vcrpy's own context manager calls


def vcr_options(
    *, match_on: Sequence[str] | None = None, filter_query_parameters: Sequence[str] = ()
) -> dict[str, Any]:
    """vcrpy options shared by the bridge and vcrpy-patched clients (requests, httpx).

    Pass them to ``vcr.use_cassette(path, record_mode=..., **vcr_options(...))`` (or return
    them from pytest-recording's ``vcr_config``) so those clients match, scrub and decode
    exactly as the bridge does.
    """
    return {
        "serializer": "yaml",
        "match_on": tuple(match_on or DEFAULT_MATCH_ON),
        "decode_compressed_response": True,
        "filter_headers": SECRET_REQUEST_HEADERS,
        "filter_query_parameters": tuple(filter_query_parameters),
        "before_record_request": _empty_body_as_none,
        "before_record_response": (_drop_secret_headers, _finish_decoding),
    }


def _empty_body_as_none(request: VcrRequest) -> VcrRequest:
    """before_record_request hook: httpx sends ``b""`` where requests sends None.

    vcrpy's ``body`` matcher tells them apart, so a GET recorded by one client would not
    replay in the other; the hook also runs on every incoming request before matching.
    """
    if request.body == b"":
        request.body = None
    return request


def _cassette_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """Keep the merged-config keys ``Cassette`` accepts (it rejects e.g. path_transformer)."""
    accepted = inspect.signature(Cassette.__init__).parameters
    return {key: value for key, value in config.items() if key in accepted}


def _vcr_request(
    method: str, url: str, headers: HeaderInput | None, body: bytes | str | None
) -> VcrRequest:
    """Build vcrpy's request; values of one header are joined as http.client would send them."""
    joined: dict[str, str] = {}
    for name, value in _pairs(headers or {}):
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    return VcrRequest(method.upper(), url, body or None, joined)


def _pairs(headers: HeaderInput) -> list[tuple[str, str]]:
    """Flatten a mapping (str or list values) or an iterable of pairs into (name, value) pairs."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    pairs: list[tuple[str, str]] = []
    for name, value in items:
        values = [value] if isinstance(value, str | bytes) else list(value)
        pairs.extend((_text(name), _text(one)) for one in values)
    return pairs


def _text(value: str | bytes) -> str:
    """Header text as http.client and vcrpy keep it: bytes read as latin-1."""
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _header_lists(headers: HeaderInput) -> dict[str, list[str]]:
    """vcrpy's stored header shape: name -> list of values, first spelling of a name wins."""
    lists: dict[str, list[str]] = {}
    spelling: dict[str, str] = {}
    for name, value in _pairs(headers):
        key = spelling.setdefault(name.lower(), name)
        lists.setdefault(key, []).append(value)
    return lists


def _phrase(status: int) -> str:
    """Reason phrase for clients that don't keep one (Scrapy); empty for unknown codes."""
    try:
        return HTTPStatus(int(status)).phrase
    except ValueError:
        return ""


def _played(response: Mapping[str, Any]) -> PlayedResponse:
    """Turn vcrpy's response dict into a PlayedResponse without touching the body bytes."""
    body = response["body"]["string"] or b""
    headers = [
        (name, value)
        for name, value in _pairs(response["headers"])
        if name.lower() not in STALE_RESPONSE_HEADERS
    ]
    return PlayedResponse(
        status=int(response["status"]["code"]),
        reason=str(response["status"].get("message") or ""),
        headers=headers,
        body=body.encode("utf-8") if isinstance(body, str) else bytes(body),
    )


def _drop_secret_headers(response: dict[str, Any]) -> dict[str, Any]:
    """before_record_response hook: session cookies must never reach a committed fixture."""
    response["headers"] = {
        name: values
        for name, values in response["headers"].items()
        if name.lower() not in SECRET_RESPONSE_HEADERS
    }
    return response


def _finish_decoding(response: dict[str, Any]) -> dict[str, Any]:
    """before_record_response hook: decode what vcrpy's decode_response leaves encoded.

    vcrpy decodes one gzip/deflate/br layer. Left over are zstd (Scrapy 2.19 always sends
    ``Accept-Encoding: ... zstd``), stacked codings, and stale headers: vcrpy+urllib3 store the
    already-decoded body but keep ``Content-Encoding``. Every decoder here tolerates a body
    that is already decoded, so the hook is idempotent (it also runs when a cassette loads).
    """
    headers = response["headers"]
    names = [name for name in headers if name.lower() == "content-encoding"]
    codings = [c.strip().lower() for n in names for v in _values(headers[n]) for c in v.split(",")]
    decoders = [_decoder(coding) for coding in codings if coding and coding != "identity"]
    if not names or None in decoders:
        return response  # an unknown coding stays declared rather than silently mangled
    body = response["body"]["string"] or b""
    body = body.encode("utf-8") if isinstance(body, str) else body
    for decode in reversed(decoders):
        body = decode(body) if decode else body
    for name in names:
        del headers[name]
    for name in [name for name in headers if name.lower() == "content-length"]:
        headers[name] = [str(len(body))]
    response["body"]["string"] = body
    return response


def _values(value: str | Sequence[str]) -> list[str]:
    """vcrpy header values are lists, hand-edited cassettes may hold a bare string."""
    return [value] if isinstance(value, str) else list(value)


def _decoder(coding: str) -> Callable[[bytes], bytes] | None:
    """A tolerant decoder for one content coding, or None when there is none available."""
    if coding in AVAILABLE_DECOMPRESSORS:
        return AVAILABLE_DECOMPRESSORS[coding]
    if coding == "zstd" and _zstd is not None:
        return _unzstd
    return None


def _unzstd(body: bytes) -> bytes:
    """Decode zstd, or keep the body when it is not zstd (already decoded by the client)."""
    try:
        return _zstd.decompress(body)
    except Exception:  # ZstdError's module differs between stdlib and backport
        return body


def without_params(url: str, names: Iterable[str]) -> str:
    """``url`` without the query parameters ``names`` (a per-call token, a cache-buster)."""
    drop = set(names)
    if not drop:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in drop]
    return urlunsplit(parts._replace(query=urlencode(query)))


def crawl_mode(settings: Any) -> str:
    """live, record or replay, from a crawl's Scrapy settings (``CW_CASSETTE[_MODE]``)."""
    if not settings.get("CW_CASSETTE"):
        return "live"
    return "record" if settings.get("CW_CASSETTE_MODE", "replay") == "record" else "replay"
