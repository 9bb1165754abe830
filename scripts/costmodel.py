#!/usr/bin/env python3
"""roomcast's AWS bill for a room of N members, from list prices and measured inputs.

Prints the cost-model tables of docs/performance.md ("Cost model"). The inputs
are the measured figures that section names (handler durations, DynamoDB
requests and capacity units per operation); the prices are us-east-1 on-demand
list prices with the sources given there. Change them here and run again.

    scripts/costmodel.py
    scripts/costmodel.py --check docs/performance.md   # exit 1 unless every table is there

scripts/test runs the --check form, so the document keeps the script's numbers.
"""

import contextlib
import io
import sys

# us-east-1 list prices (docs/performance.md, "Cost model": sources and dates).
MESSAGE = 1.00e-6  # API Gateway WebSocket message (per 32 KB), first 1 billion a month
MESSAGE_OVER_1B = 0.80e-6  # beyond 1 billion a month (not confirmed from a stored source)
CONNECTION_MINUTE = 0.25e-6
LAMBDA_REQUEST = 0.20e-6
LAMBDA_GB_SECOND = 0.0000133334  # arm64
WRU = 0.625e-6  # DynamoDB on-demand write request unit
RRU = 0.125e-6  # DynamoDB on-demand read request unit
C7G_LARGE_HOUR = 0.0725
ALB_HOUR = 0.0225
LCU_HOUR = 0.008
REDIS_SMALL_HOUR = 0.032  # cache.t4g.small (not confirmed from a stored source)
SQS_REQUEST = 0.40e-6  # standard queue, per request (per 64 KB chunk), after the first million a month

MEMORY_GB = 256 / 1024  # the template's MemorySize
SENDS = 1_000_000
ROOMS = [10, 1_000, 10_000]
MONTH_MINUTES = 30 * 24 * 60

# A `send` handler's duration: its DynamoDB requests one after another (DDB_MS
# each: in-region single-digit milliseconds; dynalite on loopback is no guide),
# then the fan-out, which replies after the last post. The fan-out keeps 256
# posts in flight, so with 20 ms per @connections call it is at least
# ceil((N-1)/256) waves of 20 ms (measured with `roomcast dev
# --management-latency-ms 20`: 10,000 members took 951-991 ms from the publish
# to the last receipt, 40 waves being 800 ms). Unless the CPU is the limit: a
# 256 MB function has 256/1769 of a vCPU (AWS Lambda: 1,769 MB is one vCPU), and
# each post costs CPU_PER_POST_US of a full core: an estimate (the client's share
# of a delivery in docs/performance.md's profiles, plus TLS) until
# crates/core/benches/tls_post.rs has been run on an idle machine.
POST_MS = 20.0
IN_FLIGHT = 256
MEASURED_WAVE_OVERHEAD = 991.0 / 800.0  # the 10,000-member run against 40 waves
CPU_PER_POST_US = 30.0
VCPU = 256 / 1769
DDB_MS = 5.0
# Capacity units per `send` (scripts/ddbcount.py): the rate counter's UpdateItem
# (1 WRU), the sender's membership GetItem (1 RRU, strongly consistent) and the
# member Query pages (0.5 RRU per 4 KB, eventually consistent: 5.5 RRU measured
# for 600 members in 2 pages, about 0.009 RRU per member).
# The counter's UpdateItem is 1 WRU, or 2 when it opens a new 10 s window (a
# new item, indexed by byConnection); a member sending less often than every
# 10 s always opens one: counted as 2.
SEND_WRU = 2.0
RRU_PER_MEMBER = 5.5 / 600
# A ping: one UpdateItem of the rate counter. Pings come minutes apart, so each
# opens a new counter window: a new item, whose `cid` also writes the
# byConnection index (1 WRU table + 1 WRU index).
PING_WRU = 2.0
PING_MS = 3.0 + DDB_MS
PING_INTERVAL_MIN = 5  # clients/js default
ROTATE_MIN = 110  # clients/js replaces connections ahead of the 2-hour cap

# One rotation: authorizer + $connect + join (+ ack) + $disconnect of the old
# connection, for a signed-in member of one room. Write units, each item write
# counted with the index entries it writes (docs/data-model.md): every item
# carries `cid` (byConnection, keys only); a signed-in user's connection item
# also `uid` (byUser).
SIGNED_IN = True
CONNECTION_ITEM_WRU = 2 + (1 if SIGNED_IN else 0)  # table + byConnection (+ byUser)
MEMBERSHIP_WRU = 2  # table + byConnection
COUNTER_WRU = 2  # a rate counter item: table + byConnection
# Rate counters alive when the connection ends: the join's and one per ping
# (each ping opens a new 10 s window, so a new item). Their ttl has passed, but
# DynamoDB's TTL deletes lazily, so the byConnection Query still finds them.
COUNTERS_PER_CONNECTION = 1 + ROTATE_MIN // PING_INTERVAL_MIN
# Whether $disconnect deletes the rate counters (2 WRU each; it did until
# 2026-12-06) or leaves them to TTL, which deletes for free (now).
DISCONNECT_DELETES_COUNTERS = False
ROTATION_RRU = 0.5  # $disconnect's byConnection Query: one page of keys


def rotation_wru(deletes_counters=DISCONNECT_DELETES_COUNTERS):
    written = CONNECTION_ITEM_WRU + MEMBERSHIP_WRU + COUNTER_WRU  # $connect, join, join's counter
    deleted = CONNECTION_ITEM_WRU + MEMBERSHIP_WRU
    if deletes_counters:
        deleted += COUNTERS_PER_CONNECTION * COUNTER_WRU
    return written + deleted


# Queued broadcasts (BroadcastQueue): SQS requests per message. The producer
# sends in batches of SQS_SEND_BATCH (SendMessageBatch takes 10; 1 for
# SendMessage); the event source mapping receives up to 10 per ReceiveMessage
# and deletes up to 10 per DeleteMessageBatch. Each request is billed per 64 KB
# of payload: broadcasts here are small.
SQS_SEND_BATCH = 10
SQS_REQUESTS_PER_MESSAGE = 1 / SQS_SEND_BATCH + 1 / 10 + 1 / 10
# An idle queue still costs its event source mapping's long polls: with
# ScalingConfig.MaximumConcurrency set, Lambda keeps 5 pollers (it can go down to
# 2 without it), each one ReceiveMessage per 20 s wait (assumed: the longest).
IDLE_POLLERS = 5
LONG_POLL_SECS = 20
# The broadcast function's DynamoDB per queued broadcast: the member Query pages
# (as a send's), and the idempotency record: one conditional PutItem of an item
# without `cid` (no index write), which TTL deletes for free.
BROADCAST_IDEMPOTENCY_WRU = 1.0
# Messages of one SQS batch share an invocation; with the 1 s batching window a
# steady stream of broadcasts arrives in batches of about this many.
BROADCASTS_PER_INVOCATION = 10


def messages_cost(n_messages):
    first = min(n_messages, 1e9)
    return first * MESSAGE + max(0.0, n_messages - 1e9) * MESSAGE_OVER_1B


def lambda_cost(invocations, ms):
    billed_ms = -(-ms // 1)  # rounded up to 1 ms
    return invocations * (LAMBDA_REQUEST + MEMORY_GB * billed_ms / 1000 * LAMBDA_GB_SECOND)


def send_ms(n):
    pages = -(-n // 500)
    waves = -(-(n - 1) // IN_FLIGHT)
    latency_bound = waves * POST_MS * MEASURED_WAVE_OVERHEAD
    cpu_bound = (n - 1) * CPU_PER_POST_US / 1000 / VCPU
    return DDB_MS * (2 + pages) + max(latency_bound, cpu_bound), latency_bound, cpu_bound


def sends(n):
    ms = send_ms(n)[0]
    rru = 1.0 + max(0.5, RRU_PER_MEMBER * n)
    msgs = SENDS * (n + 1)  # the frame in, the ack out, n - 1 deliveries
    return {
        "messages": msgs,
        "messages $": messages_cost(msgs),
        "lambda ms": ms,
        "GB-s": SENDS * MEMORY_GB * -(-ms // 1) / 1000,
        "lambda $": lambda_cost(SENDS, ms),
        "WRU": SENDS * SEND_WRU,
        "RRU": SENDS * rru,
        "dynamodb $": SENDS * (SEND_WRU * WRU + rru * RRU),
    }


def staying_connected(n, deletes_counters=DISCONNECT_DELETES_COUNTERS):
    """A month of n members connected all the time: connection-minutes, pings,
    and the connection rotation ahead of API Gateway's 2-hour cap."""
    minutes = n * MONTH_MINUTES
    pings = minutes / PING_INTERVAL_MIN
    rotations = minutes / ROTATE_MIN
    wru = rotation_wru(deletes_counters)
    return {
        "connection-minutes $": minutes * CONNECTION_MINUTE,
        "pings": pings,
        "ping messages $": pings * 2 * MESSAGE,
        "ping lambda $": lambda_cost(pings, PING_MS),
        "ping writes $": pings * PING_WRU * WRU,
        "pings $": pings * (2 * MESSAGE + PING_WRU * WRU) + lambda_cost(pings, PING_MS),
        "ping write share": PING_WRU * WRU
        / (2 * MESSAGE + PING_WRU * WRU + lambda_cost(1, PING_MS)),
        "rotations": rotations,
        "rotation WRU": wru,
        "rotation writes $": rotations * wru * WRU,
        "rotations $": rotations * (2 * MESSAGE + wru * WRU + ROTATION_RRU * RRU)
        + lambda_cost(4 * rotations, 10.0),
    }


def queued(n):
    """1,000,000 broadcasts to a room of n members through BroadcastQueue: SQS,
    the broadcast function, one post per member, DynamoDB."""
    ms_per_broadcast = send_ms(n + 1)[0]  # a send's fan-out to n members
    invocations = SENDS / BROADCASTS_PER_INVOCATION
    ms = ms_per_broadcast * BROADCASTS_PER_INVOCATION
    rru = max(0.5, RRU_PER_MEMBER * n)
    requests = SENDS * SQS_REQUESTS_PER_MESSAGE
    return {
        "SQS requests": requests,
        "SQS $": requests * SQS_REQUEST,
        "messages $": messages_cost(SENDS * n),
        "lambda $": lambda_cost(invocations, ms),
        "dynamodb $": SENDS * (BROADCAST_IDEMPOTENCY_WRU * WRU + rru * RRU),
    }


def idle_polling():
    requests = IDLE_POLLERS * MONTH_MINUTES * 60 / LONG_POLL_SECS
    return requests, requests * SQS_REQUEST


def socketio(n):
    """Two c7g.large behind an ALB with a small Redis for the adapter, a month."""
    hours = MONTH_MINUTES / 60
    lcu = max(n / 3000, 1.0)  # active connections per LCU dominate here
    return 2 * C7G_LARGE_HOUR * hours + (ALB_HOUR + lcu * LCU_HOUR) * hours + REDIS_SMALL_HOUR * hours


def money(x):
    return f"${x:,.2f}"


def table(title, header, rows):
    print(f"{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def main():
    rows = []
    for n in ROOMS:
        s = sends(n)
        total = s["messages $"] + s["lambda $"] + s["dynamodb $"]
        rows.append([
            f"{n:,}", f"{s['messages']:,.0f}", money(s["messages $"]), f"{s['lambda ms']:,.0f}",
            f"{s['GB-s']:,.0f}", money(s["lambda $"]), f"{s['WRU']:,.0f}", f"{s['RRU']:,.0f}",
            money(s["dynamodb $"]), money(total),
        ])
    table(
        "1,000,000 sends to a room of N members:",
        ["N", "API Gateway messages", "messages", "Lambda ms per send", "GB-s", "Lambda",
         "WRU", "RRU", "DynamoDB", "total"],
        rows,
    )
    rows = []
    for n in ROOMS:
        c = staying_connected(n)
        total = c["connection-minutes $"] + c["pings $"] + c["rotations $"]
        rows.append([
            f"{n:,}", money(c["connection-minutes $"]), money(c["pings $"]),
            money(c["rotations $"]), money(total), money(socketio(n)),
        ])
    table(
        "Keeping the N members connected for a 30-day month:",
        ["N", "connection-minutes", "pings", "rotations", "total", "Socket.io + Redis on EC2"],
        rows,
    )
    before, after = rotation_wru(True), rotation_wru(False)
    c10k = staying_connected(10_000)
    print(
        f"A rotation writes {before:.0f} WRU while $disconnect deletes the "
        f"{COUNTERS_PER_CONNECTION} rate counters, {after:.0f} when TTL removes them: "
        f"{money((before - after) * c10k['rotations'] * WRU)} a month at 10,000 connections.\n"
    )
    rows = []
    for n in ROOMS:
        q = queued(n)
        total = q["SQS $"] + q["messages $"] + q["lambda $"] + q["dynamodb $"]
        rows.append([
            f"{n:,}", f"{q['SQS requests']:,.0f}", money(q["SQS $"]), money(q["messages $"]),
            money(q["lambda $"]), money(q["dynamodb $"]), money(total),
        ])
    table(
        "1,000,000 queued broadcasts to a room of N members:",
        ["N", "SQS requests", "SQS", "messages", "Lambda", "DynamoDB", "total"],
        rows,
    )
    requests, cost = idle_polling()
    print(f"An idle queue's long polls: {requests:,.0f} requests, {money(cost)} a month.\n")
    total = c10k["connection-minutes $"] + c10k["pings $"] + c10k["rotations $"]
    rows = [
        ["connection-minutes", money(c10k["connection-minutes $"])],
        ["ping messages (2 per ping)", money(c10k["ping messages $"])],
        ["ping invocations", money(c10k["ping lambda $"])],
        ["ping rate-counter writes", money(c10k["ping writes $"])],
        ["rotations", money(c10k["rotations $"])],
        ["total", money(total)],
        ["Socket.io + Redis on EC2", money(socketio(10_000))],
    ]
    table("10,000 members connected for a month, by item:", ["item", "cost"], rows)
    for n in ROOMS:
        total, latency, cpu = send_ms(n)
        print(f"N={n}: fan-out latency-bound {latency:.0f} ms, CPU-bound at 256 MB {cpu:.0f} ms")
    s10 = sends(10)
    share = SEND_WRU * WRU * SENDS / (s10["messages $"] + s10["lambda $"] + s10["dynamodb $"])
    print(f"The rate counter's write is {share:.0%} of a send to a room of 10.")
    print(f"\nThe rate counter's write is {staying_connected(1)['ping write share']:.0%} of a ping's cost.")


def check(path):
    """Every table row this script prints must be in the document at `path`."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main()
    doc = open(path).read()
    missing = [line for line in out.getvalue().splitlines() if line.startswith("| ") and line not in doc]
    for line in missing:
        print(f"{path} lacks: {line}")
    print(f"costmodel: {path} {'matches' if not missing else 'does not match'} scripts/costmodel.py")
    return 1 if missing else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check"] and len(sys.argv) == 3:
        sys.exit(check(sys.argv[2]))
    if sys.argv[1:]:
        sys.exit(__doc__)
    main()
