"""HTTP peers run inside test namespaces: ``server PORT`` and ``client HOST PORT N SIZE``.

The server answers every request with the SHA-256 of its body. Each client
connection sends a few keep-alive requests with random bodies and prints, as
one JSON line, exactly the bytes it sent (hex) and the digests it got back.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        digest = hashlib.sha256(body).hexdigest().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(digest)))
        self.end_headers()
        self.wfile.write(digest)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    request_queue_size = 512  # many concurrent clients; the default 5 overflows


def serve(port: int) -> None:
    server = Server(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


def one_connection(host: str, port: int, size: int, requests: int) -> dict[str, object]:
    sent = b""
    digests = []
    with socket.create_connection((host, port), timeout=20) as sock:
        reader = sock.makefile("rb")
        for i in range(requests):
            body = os.urandom(size + i)
            request = (
                f"POST /upload/{i} HTTP/1.1\r\nHost: {host}\r\nX-Test: yes\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            sock.sendall(request)
            sent += request
            status = reader.readline()
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            got = reader.read(length).decode()
            ok = status.startswith(b"HTTP/1.1 200") and got == hashlib.sha256(body).hexdigest()
            digests.append(ok)
    return {"sent": sent.hex(), "ok": digests}


def clients(host: str, port: int, n: int, size: int) -> None:
    results: list[dict[str, object]] = []
    lock = threading.Lock()

    def run() -> None:
        result = one_connection(host, port, size, 3)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]))
    else:
        clients(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
