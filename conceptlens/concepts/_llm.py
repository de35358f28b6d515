"""A small OpenAI-compatible chat-completions client (standard library only).

It never calls the network unless the user asked for it: there is no default endpoint,
and a missing base URL raises :class:`~conceptlens.exceptions.ConfigError` naming the
environment variable to set. Each request has a total deadline (connect, headers and
body together: a server that trickles bytes cannot hold it open), a cap on the response
size (an oversized answer fails at once and is not retried), and follows redirects only
within the same origin (scheme, host and port) -- a redirect elsewhere is refused, so the
API key is never sent to another host, and nothing from it is cached. Requests are
retried with exponential backoff on HTTP 429 and 5xx (``Retry-After`` respected), ask for
structured JSON output, and every successful answer is cached on disk keyed by the
SHA-256 of model + full request, so a rerun costs nothing.

Malformed answers (not JSON, or JSON that fails the schema) are retried up to
``max_retries`` times like a transient error, then raise :class:`LLMError` that quotes
the start of the answer. Malformed answers are never cached.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import hashlib
import http.client
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from conceptlens._io import atomic_write_text, user_path
from conceptlens.exceptions import ConceptLensError, ConfigError

__all__ = ["LLMClient", "LLMError", "default_cache_dir", "validate_json"]

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
#: default cap on one response body, in bytes
MAX_RESPONSE_BYTES = 4_000_000
_MAX_REDIRECTS = 3


class LLMError(ConceptLensError, RuntimeError):
    """The language-model endpoint failed, timed out, or answered something unusable."""


class _Fatal(LLMError):
    """An error that a retry cannot fix (refused redirect, oversized answer)."""


# --------------------------------------------------------------------------- transport
def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default


class _Deadline:
    """Shuts every socket of one request down when its total time is up.

    A per-read socket timeout never fires against a server that sends one byte a second;
    shutting the socket down interrupts any blocked read at once.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._timer.cancel()

    def register(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._socks.append(sock)
            if not self.expired:
                return
        self._shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            socks = list(self._socks)
        for sock in socks:
            self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _WatchedHTTP(http.client.HTTPConnection):
    def __init__(self, *args: Any, deadline: _Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    def connect(self) -> None:
        super().connect()
        self._deadline.register(self.sock)


class _WatchedHTTPS(http.client.HTTPSConnection):
    def __init__(self, *args: Any, deadline: _Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    def connect(self) -> None:
        super().connect()
        self._deadline.register(self.sock)


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(functools.partial(_WatchedHTTP, deadline=self._deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(
            functools.partial(_WatchedHTTPS, deadline=self._deadline),
            req,
            context=self._context,  # type: ignore[attr-defined]
        )


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow 307/308 within the same origin (method, body and headers kept); refuse the
    rest: a redirect to another origin would carry the ``Authorization`` header there."""

    max_redirections = _MAX_REDIRECTS

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        target = urllib.parse.urljoin(req.full_url, newurl)
        if _origin(target) != _origin(req.full_url):
            raise _Fatal(
                f"{req.full_url} redirected (HTTP {code}) to another origin "
                f"({_origin(target)[0]}://{_origin(target)[1]}); refused, the API key is not "
                "sent there and nothing is cached. Point --base-url at the final endpoint."
            )
        if code not in (307, 308):
            return None  # 301/302/303 would turn the POST into a GET: reported as an error
        return urllib.request.Request(
            target,
            data=req.data,
            headers=dict(req.header_items()),
            method=req.get_method(),
        )


def _read_capped(resp: Any, limit: int, url: str) -> bytes:
    length = resp.headers.get("Content-Length") if resp.headers is not None else None
    if length is not None and length.isdigit() and int(length) > limit:
        raise _Fatal(
            f"{url} announced a {int(length):,}-byte answer, above the {limit:,}-byte limit "
            "(max_response_bytes=); refused without downloading it"
        )
    chunks: list[bytes] = []
    total = 0
    while chunk := resp.read(65536):
        total += len(chunk)
        if total > limit:
            raise _Fatal(
                f"{url} sent more than {limit:,} bytes (max_response_bytes=); the answer was "
                "abandoned and is not retried"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def default_cache_dir() -> Path:
    """``llm`` below :func:`conceptlens._io.cache_root`."""
    from conceptlens._io import cache_root

    return cache_root() / "llm"


def validate_json(value: Any, schema: Mapping[str, Any], path: str = "$") -> None:
    """Check ``value`` against the JSON-Schema subset used here; raise ``ValueError``.

    Supported keywords: ``type`` (object, array, string, integer, number, boolean),
    ``properties``, ``required``, ``additionalProperties: false``, ``items``, ``enum``,
    ``minItems``, ``maxItems``, ``maxLength``.
    """
    typ = schema.get("type")
    checks: dict[str, Callable[[Any], bool]] = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    if typ is not None and not checks[typ](value):
        raise ValueError(f"{path}: expected {typ}, got {type(value).__name__}")
    if "enum" in schema and value not in schema["enum"]:
        raise ValueError(f"{path}: {value!r} is not one of {schema['enum']}")
    if typ == "string" and "maxLength" in schema and len(value) > schema["maxLength"]:
        raise ValueError(f"{path}: string longer than {schema['maxLength']}")
    if typ == "object":
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                raise ValueError(f"{path}: missing required key {key!r}")
        for key, item in value.items():
            if key in props:
                validate_json(item, props[key], f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                raise ValueError(f"{path}: unexpected key {key!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                validate_json(item, schema["additionalProperties"], f"{path}.{key}")
    if typ == "array":
        if "minItems" in schema and len(value) < schema["minItems"]:
            raise ValueError(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise ValueError(f"{path}: more than {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                validate_json(item, schema["items"], f"{path}[{i}]")


def _retry_after(header: str | None) -> float | None:
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class LLMClient:
    """Client for any OpenAI-compatible ``/chat/completions`` endpoint.

    Parameters
    ----------
    base_url : str, optional
        E.g. ``http://localhost:8000/v1``. Defaults to ``$OPENAI_BASE_URL``; there is no
        built-in endpoint.
    api_key : str, optional
        Defaults to ``$OPENAI_API_KEY`` (may be empty for local servers).
    model : str, optional
        Defaults to ``$OPENAI_MODEL`` or ``"gpt-4o-mini"``.
    timeout : float
        Total seconds per request: connect, headers and the whole body. A server that
        trickles bytes is cut off when the time is up.
    max_response_bytes : int
        Largest answer accepted; a larger one fails at once and is not retried.
    max_retries : int
        Retries after the first try, on 429/5xx, network errors and malformed answers.
    backoff : float
        First backoff in seconds; doubles each retry (capped by ``max_backoff``).
        A ``Retry-After`` header takes precedence.
    cache_dir : path or None or False
        Response cache folder; ``None`` = :func:`default_cache_dir`, ``False`` = no cache.
    temperature : float
        Sent with every request (0 for reproducibility).
    structured : bool
        Send ``response_format`` with the JSON schema (set False for servers that reject it;
        the answer is validated against the schema either way).

    Examples
    --------
    >>> client = LLMClient(base_url="http://127.0.0.1:8000/v1", cache_dir=False)
    >>> client.model
    'gpt-4o-mini'
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float = 60.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        cache_dir: str | os.PathLike[str] | bool | None = None,
        temperature: float = 0.0,
        structured: bool = True,
    ) -> None:
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise ConfigError(
                "no language-model endpoint configured: set the OPENAI_BASE_URL environment "
                "variable (e.g. http://localhost:8000/v1) or pass base_url= / --base-url"
            )
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base URL {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.model = model or os.environ.get("OPENAI_MODEL") or "gpt-4o-mini"
        self.timeout = float(timeout)
        if not self.timeout > 0:
            raise ConfigError(f"timeout must be positive, got {timeout!r}")
        self.max_response_bytes = int(max_response_bytes)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        if cache_dir is True or cache_dir is None:
            self.cache_dir: Path | None = default_cache_dir()
        elif cache_dir is False:
            self.cache_dir = None
        else:
            self.cache_dir = user_path(cache_dir)
        self.temperature = float(temperature)
        self.structured = bool(structured)
        self.n_requests = 0  # HTTP requests actually sent (for tests and reports)
        self.n_cache_hits = 0
        self._sleep: Callable[[float], None] = time.sleep

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _request_body(
        self, messages: Sequence[Mapping[str, str]], schema: Mapping[str, Any] | None, name: str
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in messages],
            "temperature": self.temperature,
        }
        if schema is not None and self.structured:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": dict(schema), "strict": True},
            }
        return body

    @staticmethod
    def request_hash(body: Mapping[str, Any]) -> str:
        """SHA-256 of the canonical request (model included): the cache key."""
        canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canon.encode("utf-8")).hexdigest()

    def _cache_path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / f"{key}.json"

    def _post(self, body: Mapping[str, Any]) -> tuple[int, dict[str, str], bytes]:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.endpoint, data=data, headers=headers, method="POST")
        self.n_requests += 1
        with _Deadline(self.timeout) as deadline:
            opener = urllib.request.build_opener(
                _HTTPHandler(deadline), _HTTPSHandler(deadline), _SameOriginRedirects()
            )
            try:
                try:
                    with opener.open(req, timeout=self.timeout) as resp:
                        return (
                            resp.status,
                            dict(resp.headers),
                            _read_capped(resp, self.max_response_bytes, self.endpoint),
                        )
                except urllib.error.HTTPError as exc:
                    err_body = _read_capped(exc, self.max_response_bytes, self.endpoint)
                    return exc.code, dict(exc.headers or {}), err_body
            except _Fatal:
                raise
            except (OSError, http.client.HTTPException) as exc:
                if deadline.expired:
                    raise TimeoutError(f"no complete answer within {self.timeout:g} s") from exc
                if isinstance(exc, http.client.HTTPException):
                    raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
                raise

    def chat_json(
        self,
        messages: Sequence[Mapping[str, str]],
        schema: Mapping[str, Any] | None = None,
        *,
        name: str = "concepts",
    ) -> tuple[Any, str]:
        """Send a chat request; return (parsed JSON answer, request hash).

        Raises
        ------
        LLMError
            After ``max_retries`` retries on 429/5xx/network errors/malformed answers,
            on a timeout of every try, or at once on other HTTP errors (401, 404...).
        """
        body = self._request_body(messages, schema, name)
        key = self.request_hash(body)
        cache = self._cache_path(key)
        if cache is not None and cache.is_file():
            try:
                cached = json.loads(cache.read_text(encoding="utf-8"))["answer"]
                if schema is not None:
                    validate_json(cached, schema)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                cache.unlink(missing_ok=True)  # corrupted or stale entry: ask again
            else:
                self.n_cache_hits += 1
                return cached, key
        last_error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            wait = min(self.max_backoff, self.backoff * (2**attempt))
            try:
                status, headers, payload = self._post(body)
            except _Fatal as exc:
                raise LLMError(str(exc)) from None
            except TimeoutError as exc:
                last_error = f"timed out after {self.timeout:g} s ({exc})"
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                    last_error = f"timed out after {self.timeout:g} s"
                else:
                    last_error = f"cannot reach {self.endpoint}: {exc.reason}"
            except (ConnectionError, OSError) as exc:
                last_error = f"connection error with {self.endpoint}: {exc}"
            else:
                if status == 200:
                    try:
                        answer = self._parse(payload, schema)
                    except ValueError as exc:
                        last_error = f"malformed answer: {exc}"
                    else:
                        if cache is not None:
                            record = {"model": self.model, "request": body, "answer": answer}
                            atomic_write_text(cache, json.dumps(record, ensure_ascii=False))
                        return answer, key
                elif status in _RETRY_STATUS:
                    last_error = f"HTTP {status}: {payload[:200].decode('utf-8', 'replace')}"
                    ra = _retry_after(headers.get("Retry-After") or headers.get("retry-after"))
                    if ra is not None:
                        wait = min(ra, self.max_backoff)
                else:
                    raise LLMError(
                        f"{self.endpoint} answered HTTP {status}: "
                        f"{payload[:300].decode('utf-8', 'replace')} (check the URL, model "
                        "name and OPENAI_API_KEY)"
                    )
            if attempt < self.max_retries:
                self._sleep(wait)
        raise LLMError(
            f"{self.endpoint} failed after {self.max_retries + 1} tries; last error: "
            f"{last_error}. Increase timeout=/max_retries= or check the server."
        )

    @staticmethod
    def _parse(payload: bytes, schema: Mapping[str, Any] | None) -> Any:
        try:
            outer = json.loads(payload.decode("utf-8"))
            content = outer["choices"][0]["message"]["content"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
            raise ValueError(f"not a chat-completions response ({e})") from e
        if not isinstance(content, str):
            raise ValueError("message content is not a string")
        text = content.strip()
        if text.startswith("```"):  # tolerate a fenced block around the JSON
            text = text.strip("`")
            text = text[4:] if text.lower().startswith("json") else text
        try:
            answer = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"content is not JSON ({e}): {content[:120]!r}") from e
        if schema is not None:
            validate_json(answer, schema)
        return answer
