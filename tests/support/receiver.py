"""A webhook receiver on 127.0.0.1 that a test can make fail, hold and recover: what it got, with signatures."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOLD_LIMIT_S = 60.0  # a held request that nobody releases is answered after this, so no thread outlives a test


@dataclass
class Delivery:
    key: str
    event: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """`fail_next(n)` answers n requests 500; `hold_next(n)` holds the next n requests unanswered until `release()`
    (or the receiver stops): a sender waiting on one times out by its own clock, however slow the machine is."""

    deliveries: list[Delivery] = field(default_factory=list)  # accepted (2xx) only
    refused: int = 0
    url: str = ""

    def __post_init__(self) -> None:
        self.lock = threading.Condition()
        self._fail = 0
        self._hold = 0  # requests still to hold
        self._holding = 0  # requests held now
        self._released = threading.Event()

    def fail_next(self, n: int) -> None:
        with self.lock:
            self._fail = n

    def hold_next(self, n: int) -> None:
        with self.lock:
            self._hold = n
            self._released.clear()

    def release(self) -> None:
        """Let the held requests go on: each is then answered like any other (and a 2xx one is a delivery)."""
        self._released.set()

    def wait_until_held(self, count: int, timeout_s: float = 30) -> None:
        """Until `count` requests are being held; fails naming how many arrived."""
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while self._holding < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self._holding} of {count} requests held after {timeout_s} s")
                self.lock.wait(left)

    def keys(self) -> list[str]:
        with self.lock:
            return [d.key for d in self.deliveries]

    def wait_for(self, count: int, timeout_s: float = 30) -> list[Delivery]:
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while len(self.deliveries) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.deliveries)} of {count} deliveries")
                self.lock.wait(left)
            return list(self.deliveries)

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            hold = self._hold > 0
            if hold:
                self._hold -= 1
                self._holding += 1
                self.lock.notify_all()
        if hold:
            self._released.wait(HOLD_LIMIT_S)
            with self.lock:
                self._holding -= 1
        with self.lock:
            if self._fail:
                self._fail -= 1
                self.refused += 1
                return 500
            key, event = headers.get("Idempotency-Key", ""), headers.get("X-Signals-Event", "")
            self.deliveries.append(Delivery(key, event, headers, body, time.time()))
            self.lock.notify_all()
        return 204


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 (the name http.server dispatches to)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            status = receiver.handle({k: v for k, v in self.headers.items()}, body)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:  # the sender gave up waiting
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield receiver
    finally:
        receiver.release()
        server.shutdown()
        server.server_close()
        thread.join(5)
