#!/usr/bin/env python3
"""A DynamoDB proxy that throttles each partition key as DynamoDB does.

dynalite (the local DynamoDB of the tests) never throttles; DynamoDB serves one
partition key at most 1,000 write units and 3,000 read units a second, on-demand
tables included. This proxy sits between a client (`roomcast dev
--dynamodb-endpoint`) and dynalite, parses each JSON 1.0 request
(`X-Amz-Target: DynamoDB_20120810.<Operation>`), charges its capacity units to
per-partition-key token buckets, forwards what fits and answers the rest as
DynamoDB answers a hot partition: HTTP 400,
`com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException`,
with a `ThrottlingReasons` entry `TableWriteKeyRangeThroughputExceeded` (or
`...Read...`, `Index...` for a GSI key).

    node infra/node_modules/dynalite/cli.js --port 4567 &
    scripts/ddb_throttle_proxy.py --upstream http://127.0.0.1:4567 --port 4568
    curl -s http://127.0.0.1:4568/stats          # totals and the hottest keys (JSON)
    curl -s 'http://127.0.0.1:4568/stats?reset=1' # the same, then start counting again
    curl -s 'http://127.0.0.1:4568/stats?top=50'  # the 50 hottest keys (10 by default)

It prints the same totals on exit (SIGINT or SIGTERM).

Charging (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/
read-write-operations.html):

- PutItem, UpdateItem, DeleteItem: ceil(item bytes / 1 KB) write units, at least
  1. The item size is the request's: PutItem's Item; UpdateItem's Key plus its
  update values; DeleteItem's Key. DynamoDB charges the larger of the item before
  and after, which the proxy does not know: items that grow by small updates, or
  large items deleted by key, are undercharged.
- BatchWriteItem: each request as above; the requests that do not fit are
  returned in `UnprocessedItems` (the others are forwarded), and the call fails
  with the exception only if none fits, as DynamoDB does.
- TransactWriteItems: twice each item's units; one key over budget cancels the
  whole transaction (`TransactionCanceledException`, reason `ThrottlingError`).
- GetItem, Query: 0.5 units per 4 KB read, eventually consistent, 1 per 4 KB
  strongly consistent. The size read is only known from the answer, so a read is
  let through if its key has at least the minimum charge left, and charged what
  dynalite reports consumed (the proxy adds `ReturnConsumedCapacity: TOTAL` when
  the request has none; the answer then carries a `ConsumedCapacity` the client
  did not ask for). A Query on a GSI charges the index's partition key.
- Other operations (Scan, BatchGetItem, control plane) are forwarded and
  counted, not throttled. Writes to a GSI (each table write that changes an
  indexed attribute) are not charged to the index's keys.

Buckets: one per (table, index, partition key value) and direction, refilled at
`--write-units` / `--read-units` a second and holding at most `--burst-secs`
seconds of that (1 s by default). DynamoDB's burst and adaptive capacity are not
documented precisely (unused capacity is kept for up to 300 s per partition, and
a hot partition may be split); a 1 s bucket models a partition that has no saved
capacity and is not split: the steady 1,000 WCU / 3,000 RCU limit. A key whose
value appears in requests is one partition: DynamoDB may place several keys in
one partition, which would throttle earlier.

The partition key attribute of each table comes from `--partition-key` (for
every table), else from a `CreateTable` the proxy forwards, else from a
`DescribeTable` it sends upstream the first time it sees the table.

Python 3 standard library only (asyncio). Error shape and exception names:
https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_ThrottlingReason.html,
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/troubleshooting-throttling-diagnostics.html
"""

import argparse
import asyncio
import base64
import collections
import json
import math
import os
import re
import signal
import sys
import time
import urllib.parse

PREFIX = "com.amazonaws.dynamodb.v20120810#"
WRITE_OPS = ("PutItem", "UpdateItem", "DeleteItem")
READ_OPS = ("GetItem", "Query")


# ---------------------------------------------------------------- item sizes


def value_size(v):
    """Bytes of one attribute value, by DynamoDB's item size rules."""
    (kind, x), = v.items()
    if kind == "S":
        return len(x.encode())
    if kind == "N":
        digits = x.lstrip("-+").replace(".", "").split("e")[0].split("E")[0].strip("0")
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(base64.b64decode(x))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in x)
    if kind == "NS":
        return sum(value_size({"N": n}) for n in x)
    if kind == "BS":
        return sum(len(base64.b64decode(b)) for b in x)
    if kind == "L":
        return 3 + sum(1 + value_size(e) for e in x)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(e) for k, e in x.items())
    return 0


def item_size(item):
    return sum(len(k.encode()) + value_size(v) for k, v in (item or {}).items())


def write_units(size):
    return max(1, math.ceil(size / 1024))


def key_string(v):
    """A printable partition key value ({"S": "room#a"} -> "room#a")."""
    if not isinstance(v, dict) or len(v) != 1:
        return None
    (_, x), = v.items()
    return str(x)


# ---------------------------------------------------------------- buckets


class Bucket:
    """A token bucket: `rate` units a second, at most `rate * burst` held."""

    __slots__ = ("rate", "cap", "tokens", "at")

    def __init__(self, rate, burst, now):
        self.rate = rate
        self.cap = rate * burst
        self.tokens = self.cap
        self.at = now

    def refill(self, now):
        self.tokens = min(self.cap, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def take(self, units, now):
        """Takes `units` if they are there; False (nothing taken) if not."""
        self.refill(now)
        if self.tokens >= units:
            self.tokens -= units
            return True
        return False

    def has(self, units, now):
        self.refill(now)
        return self.tokens >= units

    def debit(self, units, now):
        """Charges units after the fact (reads): the balance may go negative."""
        self.refill(now)
        self.tokens -= units


class KeyStats:
    __slots__ = ("requests", "throttled", "wcu", "rcu")

    def __init__(self):
        self.requests = 0
        self.throttled = 0
        self.wcu = 0.0
        self.rcu = 0.0


class Throttle:
    """Per-partition-key buckets and counters; `clock` is injectable for tests."""

    def __init__(self, wcu, rcu, burst, clock=time.monotonic):
        self.wcu, self.rcu, self.burst, self.clock = wcu, rcu, burst, clock
        self.buckets = {}
        self.reset()

    def reset(self):
        self.started = self.clock()
        self.requests = collections.Counter()
        self.throttled = collections.Counter()
        self.keys = collections.defaultdict(KeyStats)

    def bucket(self, key, write):
        b = self.buckets.get((key, write))
        if b is None:
            rate = self.wcu if write else self.rcu
            b = self.buckets[(key, write)] = Bucket(rate, self.burst, self.clock())
        return b

    def take_write(self, key, units):
        ok = self.bucket(key, True).take(units, self.clock())
        s = self.keys[key]
        s.requests += 1
        if ok:
            s.wcu += units
        else:
            s.throttled += 1
        return ok

    def admit_read(self, key, units):
        ok = self.bucket(key, False).has(units, self.clock())
        s = self.keys[key]
        s.requests += 1
        if not ok:
            s.throttled += 1
        return ok

    def charge_read(self, key, units):
        self.bucket(key, False).debit(units, self.clock())
        self.keys[key].rcu += units

    def stats(self, top=10):
        secs = max(self.clock() - self.started, 1e-9)
        hot = sorted(self.keys.items(), key=lambda kv: (kv[1].throttled, kv[1].wcu + kv[1].rcu), reverse=True)
        cpu = os.times()
        return {
            "seconds": round(secs, 3),
            "requests": sum(self.requests.values()),
            "throttled": sum(self.throttled.values()),
            # "BatchWriteItem (partly)": batches forwarded with some requests returned unprocessed.
            "by_operation": {
                op: {"requests": self.requests[op], "throttled": self.throttled[op]}
                for op in sorted(set(self.requests) | set(self.throttled))
            },
            "limits": {"write_units": self.wcu, "read_units": self.rcu, "burst_secs": self.burst},
            "proxy_cpu_secs": round(cpu.user + cpu.system, 2),
            "keys": len(self.keys),
            "hottest": [
                {
                    "table": k[0], "index": k[1], "key": k[2], "requests": s.requests, "throttled": s.throttled,
                    "write_units": round(s.wcu, 1), "read_units": round(s.rcu, 1),
                    "write_units_per_sec": round(s.wcu / secs, 1),
                }
                for k, s in hot[:top]
            ],
        }


# ---------------------------------------------------------------- requests


def throttle_error(op, key, write):
    table, index, _ = key
    kind = ("Index" if index else "Table") + ("Write" if write else "Read")
    resource = f"arn:aws:dynamodb:local:000000000000:table/{table}" + (f"/index/{index}" if index else "")
    return {
        "__type": PREFIX + "ProvisionedThroughputExceededException",
        "message": "The level of configured provisioned throughput for the table was exceeded. "
        "Consider increasing your provisioning level with the UpdateTable API.",
        "ThrottlingReasons": [{"reason": kind + "KeyRangeThroughputExceeded", "resource": resource}],
    }


class Schemas:
    """Partition key attribute per table and per index."""

    def __init__(self, fixed=None):
        self.fixed = fixed
        self.tables = {}  # table -> {None: hash attribute, index: hash attribute}

    def learn(self, desc):
        def hash_of(schema):
            return next((k["AttributeName"] for k in schema or [] if k.get("KeyType") == "HASH"), None)

        keys = {None: self.fixed or hash_of(desc.get("KeySchema"))}
        for idx in (desc.get("GlobalSecondaryIndexes") or []) + (desc.get("LocalSecondaryIndexes") or []):
            keys[idx["IndexName"]] = hash_of(idx.get("KeySchema"))
        self.tables[desc["TableName"]] = keys

    def known(self, table):
        return table in self.tables or (self.fixed is not None and table is not None)

    def attr(self, table, index=None):
        keys = self.tables.get(table)
        if keys is None:
            return self.fixed if index is None else None
        return keys.get(index)


KEY_CONDITION = re.compile(r"(#?[A-Za-z0-9_.-]+)\s*=\s*(:[A-Za-z0-9_]+)")


def query_key(doc, attr):
    """The partition key value a Query names, from its key condition."""
    names = doc.get("ExpressionAttributeNames") or {}
    values = doc.get("ExpressionAttributeValues") or {}
    for name, placeholder in KEY_CONDITION.findall(doc.get("KeyConditionExpression") or ""):
        if names.get(name, name) == attr:
            return key_string(values.get(placeholder))
    cond = (doc.get("KeyConditions") or {}).get(attr)
    if cond and cond.get("AttributeValueList"):
        return key_string(cond["AttributeValueList"][0])
    return None


def write_charge(op, doc):
    """(item attributes holding the key, units) of one write request."""
    if op == "PutItem":
        return doc.get("Item") or {}, write_units(item_size(doc.get("Item")))
    if op == "UpdateItem":
        size = item_size(doc.get("Key")) + item_size(doc.get("ExpressionAttributeValues"))
        for name, upd in (doc.get("AttributeUpdates") or {}).items():
            size += len(name.encode()) + (value_size(upd["Value"]) if "Value" in upd else 0)
        return doc.get("Key") or {}, write_units(size)
    return doc.get("Key") or {}, write_units(item_size(doc.get("Key")))


# ---------------------------------------------------------------- HTTP


class Upstream:
    """Keep-alive HTTP/1.1 connections to the DynamoDB endpoint."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.idle = []

    async def request(self, headers, body):
        for attempt in range(2):
            if self.idle:
                reader, writer = self.idle.pop()
                reused = True
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                reused = False
            try:
                head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                writer.write(
                    f"POST / HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n{head}content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                status, resp_headers, data, keep = await read_message(reader, response=True)
            except (ConnectionError, asyncio.IncompleteReadError, ValueError):
                writer.close()
                if reused and attempt == 0:
                    continue
                raise
            if keep:
                self.idle.append((reader, writer))
            else:
                writer.close()
            return status, resp_headers, data
        raise ConnectionError("upstream closed")


async def read_message(reader, response):
    """(status or (method, target), headers, body, keep-alive) of one message."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = b""
    keep = headers.get("connection", "").lower() != "close"
    if response:
        return int(first[1]), headers, body, keep
    return (first[0], first[1] if len(first) > 1 else "/"), headers, body, keep


class Proxy:
    def __init__(self, throttle, schemas, upstream):
        self.throttle, self.schemas, self.upstream = throttle, schemas, upstream

    async def serve(self, reader, writer):
        try:
            while True:
                try:
                    (method, target), headers, body, keep = await read_message(reader, response=False)
                except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                    return
                if method == "GET":
                    status, out_headers, data = self.stats_page(target)
                else:
                    status, out_headers, data = await self.handle(headers, body)
                head = "".join(f"{k}: {v}\r\n" for k, v in out_headers.items())
                writer.write(f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}\r\n{head}content-length: {len(data)}\r\n\r\n".encode() + data)
                await writer.drain()
                if not keep:
                    return
        except ConnectionError:
            pass
        finally:
            writer.close()

    def stats_page(self, target):
        u = urllib.parse.urlparse(target)
        if u.path != "/stats":
            return 404, {"content-type": "text/plain"}, b"not found; GET /stats\n"
        query = urllib.parse.parse_qs(u.query or "")
        try:
            top = int(query.get("top", ["10"])[0])
        except ValueError:
            return 400, {"content-type": "text/plain"}, b"top must be a number\n"
        data = json.dumps(self.throttle.stats(top), indent=1).encode()
        if query.get("reset") == ["1"]:
            self.throttle.reset()
        return 200, {"content-type": "application/json"}, data

    async def forward(self, headers, body):
        fwd = {k: v for k, v in headers.items() if k not in ("host", "content-length", "connection", "transfer-encoding")}
        status, resp_headers, data = await self.upstream.request(fwd, body)
        out = {k: v for k, v in resp_headers.items() if k not in ("content-length", "connection", "transfer-encoding")}
        return status, out, data

    def refuse(self, op, payload):
        self.throttle.throttled[op] += 1
        data = json.dumps(payload).encode()
        return 400, {"content-type": "application/x-amz-json-1.0", "x-amzn-requestid": os.urandom(8).hex()}, data

    async def handle(self, headers, body):
        op = headers.get("x-amz-target", "").rsplit(".", 1)[-1]
        self.throttle.requests[op] += 1
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            return await self.forward(headers, body)
        if not isinstance(doc, dict):
            return await self.forward(headers, body)
        table = doc.get("TableName")
        if op == "CreateTable":
            result = await self.forward(headers, body)
            if result[0] == 200:
                self.schemas.learn(doc)
            return result
        if op in WRITE_OPS + READ_OPS and table and not self.schemas.known(table):
            await self.describe(headers, table)
        if op in WRITE_OPS:
            item, units = write_charge(op, doc)
            key = (table, None, key_string(item.get(self.schemas.attr(table))))
            if not self.throttle.take_write(key, units):
                return self.refuse(op, throttle_error(op, key, True))
            return await self.forward(headers, body)
        if op in READ_OPS:
            return await self.read(op, doc, headers, body)
        if op == "BatchWriteItem":
            return await self.batch_write(op, doc, headers)
        if op == "TransactWriteItems":
            return await self.transact_write(op, doc, headers, body)
        return await self.forward(headers, body)

    async def read(self, op, doc, headers, body):
        table, index = doc.get("TableName"), doc.get("IndexName")
        attr = self.schemas.attr(table, index)
        value = key_string((doc.get("Key") or {}).get(attr)) if op == "GetItem" else query_key(doc, attr)
        key = (table, index, value)
        minimum = 1.0 if doc.get("ConsistentRead") else 0.5
        if not self.throttle.admit_read(key, minimum):
            return self.refuse(op, throttle_error(op, key, False))
        if "ReturnConsumedCapacity" not in doc:
            doc["ReturnConsumedCapacity"] = "TOTAL"
            body = json.dumps(doc).encode()
        status, out, data = await self.forward(headers, body)
        units = minimum
        if status == 200:
            try:
                units = float((json.loads(data).get("ConsumedCapacity") or {}).get("CapacityUnits", minimum))
            except (ValueError, AttributeError):
                pass
        self.throttle.charge_read(key, units)
        return status, out, data

    async def batch_write(self, op, doc, headers):
        accepted, unprocessed, last = {}, {}, None
        for table, requests in (doc.get("RequestItems") or {}).items():
            if not self.schemas.known(table):
                await self.describe(headers, table)
            attr = self.schemas.attr(table)
            for r in requests:
                sub = "PutItem" if "PutRequest" in r else "DeleteItem"
                inner = r.get("PutRequest") or r.get("DeleteRequest") or {}
                item, units = write_charge(sub, inner)
                key = (table, None, key_string(item.get(attr)))
                if self.throttle.take_write(key, units):
                    accepted.setdefault(table, []).append(r)
                else:
                    unprocessed.setdefault(table, []).append(r)
                    last = key
        if not unprocessed:
            return await self.forward(headers, json.dumps(doc).encode())
        if not accepted:
            return self.refuse(op, throttle_error(op, last, True))
        self.throttle.throttled[op + " (partly)"] += 1
        doc["RequestItems"] = accepted
        status, out, data = await self.forward(headers, json.dumps(doc).encode())
        if status != 200:
            return status, out, data
        answer = json.loads(data)
        left = answer.get("UnprocessedItems") or {}
        for table, requests in unprocessed.items():
            left.setdefault(table, []).extend(requests)
        answer["UnprocessedItems"] = left
        out.pop("x-amz-crc32", None)
        return status, out, json.dumps(answer).encode()

    async def transact_write(self, op, doc, headers, body):
        charges = []
        for t in doc.get("TransactItems") or []:
            (kind, inner), = t.items()
            table = inner.get("TableName")
            if table and not self.schemas.known(table):
                await self.describe(headers, table)
            sub = {"Put": "PutItem", "Update": "UpdateItem"}.get(kind, "DeleteItem")
            item, units = write_charge(sub, inner)
            charges.append(((table, None, key_string(item.get(self.schemas.attr(table)))), 2 * units))
        refused = [key for key, units in charges if not self.throttle.bucket(key, True).has(units, self.throttle.clock())]
        if refused:
            for key, _ in charges:
                self.throttle.keys[key].requests += 1
            for key in refused:
                self.throttle.keys[key].throttled += 1
            reasons = [{"Code": "ThrottlingError" if key in refused else "None"} for key, _ in charges]
            return self.refuse(op, {
                "__type": PREFIX + "TransactionCanceledException",
                "message": "Transaction cancelled, please refer cancellation reasons for specific reasons [ThrottlingError]",
                "CancellationReasons": reasons,
            })
        for key, units in charges:
            self.throttle.take_write(key, units)
        return await self.forward(headers, body)

    async def describe(self, headers, table):
        h = dict(headers)
        h["x-amz-target"] = "DynamoDB_20120810.DescribeTable"
        try:
            status, _, data = await self.forward(h, json.dumps({"TableName": table}).encode())
            if status == 200:
                self.schemas.learn(json.loads(data)["Table"])
        except (OSError, ValueError, KeyError):
            pass


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", required=True, help="DynamoDB endpoint URL to forward to (dynalite)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port; printed)")
    p.add_argument("--write-units", type=float, default=1000.0, help="write units per second per partition key")
    p.add_argument("--read-units", type=float, default=3000.0, help="read units per second per partition key")
    p.add_argument("--burst-secs", type=float, default=1.0, help="seconds of units a bucket holds")
    p.add_argument("--partition-key", help="partition key attribute of every table (else read from the schema)")
    return p.parse_args(argv)


async def start(args, throttle=None):
    """Starts the proxy; returns (server, throttle)."""
    u = urllib.parse.urlparse(args.upstream)
    throttle = throttle or Throttle(args.write_units, args.read_units, args.burst_secs)
    proxy = Proxy(throttle, Schemas(args.partition_key), Upstream(u.hostname, u.port or 80))
    server = await asyncio.start_server(proxy.serve, args.host, args.port, backlog=1024)
    return server, throttle


async def main(args):
    server, throttle = await start(args)
    port = server.sockets[0].getsockname()[1]
    print(f"ddb_throttle_proxy: listening on http://{args.host}:{port} -> {args.upstream} "
          f"({args.write_units:g} WCU/s, {args.read_units:g} RCU/s per partition key, {args.burst_secs:g} s burst)",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    print(json.dumps(throttle.stats(), indent=1), flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main(parse_args()))
    except BrokenPipeError:
        sys.exit(1)
