#!/usr/bin/env python3
"""RSS of `roomcast dev --host 0.0.0.0` while 30 unsigned clients hold 6 MB POSTs
to the Invoke API open, and how long a socket that sends nothing stays open.
Usage: scripts/measure-unsigned-bodies.py BINARY PORT (docs/local.md, Request limits)."""
import socket, subprocess, sys, time, threading, re, os
binary, port = sys.argv[1], int(sys.argv[2])
proc = subprocess.Popen([binary, "dev", "--host", "0.0.0.0", "--port", str(port), "--quiet",
    "--management-access-key-id", "AKIDMEASURE", "--management-secret-access-key", "measure-secret"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def rss():
    with open(f"/proc/{proc.pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) // 1024
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close(); break
    except OSError: time.sleep(0.1)
time.sleep(1)
print("idle RSS MiB:", rss())
SIZE = 6 * 1024 * 1024
socks, sent = [], [0]*30
def client(i):
    s = socket.create_connection(("127.0.0.1", port))
    socks.append(s)
    s.sendall(f"POST /2015-03-31/functions/broadcast/invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {SIZE}\r\n\r\n".encode())
    chunk = b"x" * 65536
    try:
        while sent[i] < SIZE - 1:
            n = min(len(chunk), SIZE - 1 - sent[i])
            s.sendall(chunk[:n]); sent[i] += n
    except OSError:
        pass
threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(30)]
for t in threads: t.start()
time.sleep(8)
print("RSS MiB with 30 clients holding 6 MB POSTs open:", rss(), "| bytes the clients got to send (MiB):", sum(sent)//(1024*1024))
for s in socks: s.close()
# A socket that sends nothing.
s = socket.create_connection(("127.0.0.1", port)); s.settimeout(40)
t0 = time.time()
try:
    data = s.recv(1024)
    print(f"silent socket: closed by the server after {time.time()-t0:.1f} s (got {len(data)} bytes)")
except socket.timeout:
    print(f"silent socket: still open after {time.time()-t0:.0f} s")
proc.terminate(); proc.wait()
