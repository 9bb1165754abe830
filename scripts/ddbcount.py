#!/usr/bin/env python3
"""DynamoDB requests and capacity units per roomcast operation, counted at the endpoint.

Puts a counting HTTP proxy in front of a DynamoDB endpoint (dynalite), runs
`roomcast dev` against the proxy, drives each protocol operation from WebSocket
clients and reports, per operation, the requests DynamoDB received (by
`X-Amz-Target`) and the capacity units it reports consumed. The proxy adds
`"ReturnConsumedCapacity": "TOTAL"` to each request so that DynamoDB (dynalite
computes them by the same item-size rules) returns the units; the handlers
ignore the extra response field.

    node infra/node_modules/dynalite/cli.js --port 4567 &
    cargo build -p roomcast
    scripts/ddbcount.py --roomcast target/debug/roomcast --dynamodb http://127.0.0.1:4567

The handlers are the ones the Lambda functions run, so the counts are theirs.
"""

import argparse
import base64
import collections
import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.requests = collections.Counter()
            self.read_units = 0.0
            self.write_units = 0.0

    def add(self, op, consumed):
        with self.lock:
            self.requests[op] += 1
            for c in consumed:
                # Tables and indexes: DynamoDB reports the total and, per
                # table/index, the read or write units.
                self.read_units += c.get("ReadCapacityUnits", 0.0)
                self.write_units += c.get("WriteCapacityUnits", 0.0)
                if "ReadCapacityUnits" not in c and "WriteCapacityUnits" not in c:
                    units = c.get("CapacityUnits", 0.0)
                    if op in ("GetItem", "Query", "Scan", "BatchGetItem"):
                        self.read_units += units
                    else:
                        self.write_units += units

    def snapshot(self):
        with self.lock:
            return dict(self.requests), self.read_units, self.write_units


COUNTER = Counter()
UPSTREAM = None  # (host, port)


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        target = self.headers.get("x-amz-target", "")
        op = target.split(".")[-1]
        try:
            doc = json.loads(body)
            if op not in ("CreateTable", "DescribeTable", "UpdateTimeToLive"):
                doc["ReturnConsumedCapacity"] = "TOTAL"
            body = json.dumps(doc).encode()
        except ValueError:
            pass
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "host")}
        headers["content-length"] = str(len(body))
        conn = http.client.HTTPConnection(*UPSTREAM, timeout=30)
        conn.request("POST", self.path, body, headers)
        resp = conn.getresponse()
        data = resp.read()
        consumed = []
        try:
            c = json.loads(data).get("ConsumedCapacity")
            consumed = c if isinstance(c, list) else [c] if c else []
        except ValueError:
            pass
        if op not in ("CreateTable", "DescribeTable", "UpdateTimeToLive"):
            COUNTER.add(op, consumed)
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    def log_message(self, *args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # Keep-alive connections the SDK drops when roomcast dev stops.
        pass


class WebSocket:
    """A minimal RFC 6455 text client, enough to drive the protocol."""

    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {u.path or '/'} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(head.split(b"\r\n")[0].decode())

    def _exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def _frame(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x80 | opcode])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            header += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send(self, obj):
        self._frame(0x1, json.dumps(obj).encode())

    def recv(self):
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._exact(2), "big")
            elif n == 127:
                n = int.from_bytes(self._exact(8), "big")
            payload = self._exact(n)
            opcode = b0 & 0x0F
            if opcode == 0x1:
                return json.loads(payload)
            if opcode == 0x8:
                raise ConnectionError("closed by the server")
            if opcode == 0x9:
                self._frame(0xA, payload)

    def request(self, obj):
        """Sends a frame with an id and returns the reply carrying it."""
        self.send(obj)
        while True:
            reply = self.recv()
            if reply.get("id") == obj.get("id") and reply.get("type") in ("ack", "pong", "error"):
                return reply

    def close(self):
        self._frame(0x8, (1000).to_bytes(2, "big"))
        try:
            while True:
                self.recv()
        except (ConnectionError, OSError):
            pass
        self.sock.close()


def settle(seconds=1.0):
    """Waits until no request has arrived for `seconds` (the $disconnect handler
    runs after the socket closes, asynchronously)."""
    last = None
    while True:
        time.sleep(seconds)
        now = COUNTER.snapshot()
        if now == last:
            return now
        last = now


def measure(results, name, action):
    settle(0.3)
    COUNTER.reset()
    action()
    requests, read, write = settle(0.5)
    results.append((name, requests, read, write))


def main():
    global UPSTREAM
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--roomcast", required=True, help="the roomcast binary (roomcast dev)")
    parser.add_argument("--dynamodb", required=True, help="DynamoDB endpoint URL (dynalite)")
    parser.add_argument("--members", type=int, default=600, help="members of the large room")
    args = parser.parse_args()
    u = urllib.parse.urlparse(args.dynamodb)
    UPSTREAM = (u.hostname, u.port)

    proxy = QuietServer(("127.0.0.1", 0), Proxy)
    proxy.daemon_threads = True
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    table = f"roomcast-count-{os.getpid()}"
    env = dict(os.environ, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_REGION="us-east-1")
    dev = subprocess.Popen(
        [
            args.roomcast, "dev", "--port", "0",
            "--dynamodb-endpoint", f"http://127.0.0.1:{proxy.server_address[1]}",
            "--table", table,
        ],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
    )
    url = None
    for line in dev.stdout:
        if "WebSocket URL:" in line:
            url = line.split("WebSocket URL:")[1].strip()
            break
    if url is None:
        sys.exit("roomcast dev did not start")
    threading.Thread(target=lambda: [None for _ in dev.stdout], daemon=True).start()

    results = []
    clients = {}
    try:
        measure(results, "$connect", lambda: clients.__setitem__("a", WebSocket(url)))
        a = clients["a"]
        b = WebSocket(url)
        measure(results, "join", lambda: a.request({"action": "join", "room": "chat:1", "id": 1}))
        b.request({"action": "join", "room": "chat:1", "id": 1})
        measure(results, "ping", lambda: a.request({"action": "ping", "id": 2}))
        measure(
            results, "send to a room of 2",
            lambda: a.request({"action": "send", "room": "chat:1", "event": "m", "data": 1, "id": 3}),
        )
        measure(results, "leave", lambda: a.request({"action": "leave", "room": "chat:1", "id": 4}))
        measure(results, "$default (unknown action)", lambda: a.request({"action": "dance", "id": 5}))
        # A large room: one Query page per 500 members (at these item sizes).
        big = [WebSocket(url) for _ in range(args.members - 1)]
        for i, c in enumerate(big):
            c.request({"action": "join", "room": "chat:big", "id": i})
        a.request({"action": "join", "room": "chat:big", "id": 6})
        measure(
            results, f"send to a room of {args.members}",
            lambda: a.request({"action": "send", "room": "chat:big", "event": "m", "data": 1, "id": 7}),
        )
        # $disconnect of a connection in one room (chat:big), then in 30 rooms.
        measure(results, "$disconnect (1 room)", a.close)
        c = WebSocket(url)
        for i in range(30):
            c.request({"action": "join", "room": f"ns{i}:r", "id": i})
        measure(results, "$disconnect (30 rooms)", c.close)
        for x in big + [b]:
            x.sock.close()
    finally:
        dev.terminate()
        dev.wait()

    print("| operation | requests | read units | write units |")
    print("|---|---|---|---|")
    for name, requests, read, write in results:
        text = ", ".join(f"{n} {op}" for op, n in sorted(requests.items())) or "none"
        print(f"| {name} | {text} | {read:g} | {write:g} |")


if __name__ == "__main__":
    main()
