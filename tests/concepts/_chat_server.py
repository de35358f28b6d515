"""A real local HTTP server speaking the OpenAI chat-completions protocol, for tests.

It answers from a *script* (a queue of behaviours: HTTP status, raw body, sleep, a
redirect, a body trickled byte by byte, an oversized body) and otherwise from a
``responder(request_json) -> answer_object`` function; the answer is wrapped as
``choices[0].message.content`` JSON text, as a real server does.

Script steps (dicts): ``{"status": 503, "headers": {...}}``, ``{"raw_content": "..."}``,
``{"sleep": s}``, ``{"redirect": url, "code": 302}``, ``{"trickle": s}`` (send the whole
response one byte every ``s`` seconds), ``{"big": n, "length": True}`` (an ``n``-byte
body, with or without a Content-Length header).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ChatServer:
    def __init__(self, responder: Callable[[dict[str, Any]], Any]) -> None:
        self.responder = responder
        self.script: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # a redirected POST turned into GET by a client
                with server._lock:
                    server.requests.append({"method": "GET", "path": self.path})
                    server.headers.append(dict(self.headers))
                self._send(200, b'{"choices": [{"message": {"content": "{}"}}]}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with server._lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    step = server.script.pop(0) if server.script else {}
                if self.path != "/v1/chat/completions":
                    self._send(404, b'{"error": "not found"}')
                    return
                if "redirect" in step:
                    self._send(step.get("code", 302), b"", {"Location": step["redirect"]})
                    return
                if "big" in step:
                    self._send_big(step["big"], step.get("length", True))
                    return
                if "sleep" in step:
                    time.sleep(step["sleep"])
                if "status" in step:
                    self._send(step["status"], b'{"error": "busy"}', step.get("headers", {}))
                    return
                if "raw_content" in step:
                    content = step["raw_content"]
                else:
                    content = json.dumps(server.responder(body))
                payload = {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                }
                if "trickle" in step:
                    self._trickle(json.dumps(payload).encode(), step["trickle"])
                    return
                self._send(200, json.dumps(payload).encode())

            def _trickle(self, data: bytes, delay: float) -> None:
                head = (
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n"
                ).encode()
                try:
                    for i in range(len(head) + len(data)):
                        self.wfile.write((head + data)[i : i + 1])
                        self.wfile.flush()
                        time.sleep(delay)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass
                self.close_connection = True

            def _send_big(self, n: int, with_length: bool) -> None:
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    if with_length:
                        self.send_header("Content-Length", str(n))
                    self.end_headers()
                    block = b" " * 65536
                    sent = 0
                    while sent < n:
                        part = block[: min(len(block), n - sent)]
                        self.wfile.write(part)
                        sent += len(part)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass
                self.close_connection = True

            def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # client gave up (timeout)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def user_text(body: dict[str, Any]) -> str:
    return "\n".join(m["content"] for m in body["messages"] if m["role"] == "user")
