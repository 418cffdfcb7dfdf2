"""A local Telegram Bot API server on 127.0.0.1: enough of it for a real client library to run a bot against it.

Serves `getMe`, `getUpdates` (long polling with offset and timeout), `sendMessage`, `deleteWebhook`,
`getWebhookInfo`, `setMyCommands`, `close`, `logOut` under `/bot<token>/<method>`. A test says what users type
(`user_says`) and reads what the bot sent (`sent`, `wait_for_message`). A test double, not shipped in the bento.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

HOST = "127.0.0.1"
BOT_ID = 777000111


@dataclass
class FakeTelegram:
    token: str = "123456:TEST-TOKEN"
    updates: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._next_update = 1
        self._next_message = 1
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "use `with FakeTelegram() as telegram:`"
        return f"http://{HOST}:{self._server.server_address[1]}"

    def __enter__(self) -> FakeTelegram:
        handler = type("_Bound", (_Handler,), {"api": self})
        self._server = ThreadingHTTPServer((HOST, 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        assert self._server is not None
        with self._lock:
            self._lock.notify_all()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    # --- what a test does -----------------------------------------------------------------------------------
    def user_says(self, text: str, chat_id: int = 4242, user: str = "desk") -> None:
        """Queue a message from a user, with the `bot_command` entity Telegram adds to a leading /command."""
        with self._lock:
            message: dict[str, Any] = {
                "message_id": self._next_message,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private", "first_name": user},
                "from": {"id": chat_id, "is_bot": False, "first_name": user},
                "text": text,
            }
            if text.startswith("/"):
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
            self.updates.append({"update_id": self._next_update, "message": message})
            self._next_update += 1
            self._next_message += 1
            self._lock.notify_all()

    def wait_for_message(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                found = next((m for m in self.sent if predicate(m)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no such message; the bot sent: {[m.get('text', '')[:80] for m in self.sent]}")
                self._lock.wait(left)

    # --- the API --------------------------------------------------------------------------------------------
    def call(self, method: str, params: dict[str, Any]) -> Any:
        self.calls.append(method)
        if method == "getMe":
            return {
                "id": BOT_ID,
                "is_bot": True,
                "first_name": "signals",
                "username": "signals_test_bot",
                "can_join_groups": False,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            }
        if method in ("deleteWebhook", "setMyCommands", "close", "logOut"):
            return True
        if method == "getWebhookInfo":
            return {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
        if method == "getUpdates":
            return self._get_updates(int(params.get("offset", 0) or 0), float(params.get("timeout", 0) or 0))
        if method == "sendMessage":
            with self._lock:
                message = {
                    "message_id": self._next_message,
                    "date": int(time.time()),
                    "chat": {"id": int(params["chat_id"]), "type": "private"},
                    "from": {"id": BOT_ID, "is_bot": True, "first_name": "signals"},
                    "text": str(params.get("text", "")),
                }
                self._next_message += 1
                self.sent.append(message)
                self._lock.notify_all()
            return message
        raise KeyError(method)

    def _get_updates(self, offset: int, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + min(timeout, 5.0)
        with self._lock:
            if offset:
                self.updates = [u for u in self.updates if u["update_id"] >= offset]  # confirmed ones go
            while not self.updates and time.monotonic() < deadline:
                self._lock.wait(max(0.0, deadline - time.monotonic()))
            return list(self.updates)


class _Handler(BaseHTTPRequestHandler):
    api: FakeTelegram

    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (the name http.server dispatches to)
        self._answer(parse_qs(urlparse(self.path).query))

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", 0) or 0)
        raw = self.rfile.read(length) if length else b""
        kind = self.headers.get("Content-Type", "")
        if "json" in kind:
            params = json.loads(raw or b"{}")
        else:
            params = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        self._answer(params)

    def _answer(self, params: dict[str, Any]) -> None:
        parts = urlparse(self.path).path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != f"bot{self.api.token}":
            self._send(404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        params = {k: (v[0] if isinstance(v, list) and len(v) == 1 else v) for k, v in params.items()}
        try:
            result = self.api.call(parts[1], params)
        except KeyError:
            self._send(404, {"ok": False, "error_code": 404, "description": f"method {parts[1]} not found"})
            return
        self._send(200, {"ok": True, "result": result})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
