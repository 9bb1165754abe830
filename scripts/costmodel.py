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
SQS_FIFO_REQUEST = 0.50e-6  # FIFO queue, per request (docs/broadcast.md, "Why a FIFO queue")

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


# Big rooms: a sharded room's event fans out through workers (docs/broadcast.md,
# "Big rooms: the fan-out in workers"). The member publishes (the message
# function: rate counter, membership GetItem, and in rooms with history the
# stream head's UpdateItem and the event's PutItem, an event under 1 KB, no
# index write), then sends one job per shard to the FIFO queue. Each job is one
# invocation of the broadcast function (256 MB): a conditional PutItem claims it
# (a `bcast#` item, no index: 1 WRU), it Queries its shard's members (0.5 RRU per
# 4 KB, eventually consistent, 500 items a page, the next page read while the
# posts are in flight) and posts to each at MANAGEMENT_RPS / min(K, FANOUT_WORKERS).
BIG_ROOMS = [100_000, 1_000_000]
SHARDS = 16
FANOUT_WORKERS = 16  # the event source mapping's MaximumConcurrency
MANAGEMENT_RPS = 10_000  # the account's API Gateway requests a second (default quota)
PAGE_SIZE = 500  # crates/core/src/fanout.rs
PUBLISH_WRU = SEND_WRU + 2  # rate counter + stream head + event (rooms with history)
PUBLISH_RRU = 1.0  # the sender's membership GetItem, strongly consistent
PUBLISH_MS = 5 * DDB_MS  # counter, GetItem, head, event, SendMessageBatch in turn
CLAIM_WRU = 1.0
# FIFO requests per job: its share of a SendMessageBatch of 10 (counted as
# ceil(K / 10) batches per event), one ReceiveMessage, one DeleteMessage (a job
# per receive counted: each shard is its own message group and the jobs of
# one event arrive together, so batching on the receiving side is not counted on).
FIFO_SEND_BATCH = 10
FIFO_REQUESTS_PER_JOB_RECEIVED = 2
# A worker's time besides pacing: the claim and the first page (DDB_MS each),
# the last post's POST_MS, and WORKER_START_MS for a container's start and first
# TLS handshakes (about 13 connections at 625/s and 20 ms each, 0.8 ms of CPU
# apiece at a seventh of a vCPU: ~70 ms; the init under 10 ms). Assumed, not
# measured on Lambda.
WORKER_START_MS = 100.0
WORKER_OVERHEAD_MS = 2 * DDB_MS + POST_MS + WORKER_START_MS
WORKER_TIMEOUT_S = 120 - 7  # the broadcast function's timeout less the stop margin
# A membership item as DynamoDB sizes it: attribute names plus values (strings
# as UTF-8 bytes, a number 1 byte per 2 significant digits plus 1).
ROOM_NAME_LEN = 12  # e.g. "stadium-2026"
CONNECTION_ID_LEN = 16  # e.g. "L0SM9cOFvHcCIhw="
USER_ID_LEN = 36  # a UUID; the attribute is absent for anonymous members
TTL_DIGITS = 10  # epoch seconds


def membership_bytes(shard, signed_in):
    suffix = f"#{shard}" if shard else ""  # shard 0's key has none
    pk = len("pk") + len(f"room#{'r' * ROOM_NAME_LEN}{suffix}")
    sk = len("sk") + len("conn#") + CONNECTION_ID_LEN
    cid = len("cid") + CONNECTION_ID_LEN
    ttl = len("ttl") + -(-TTL_DIGITS // 2) + 1
    user = len("userId") + USER_ID_LEN if signed_in else 0
    return pk + sk + cid + ttl + user


def shard_rru(members, shard, signed_in):
    """Eventually consistent Query pages of one shard: 0.5 RRU per 4 KB a page."""
    size = membership_bytes(shard, signed_in)
    full, rest = divmod(members, PAGE_SIZE)

    def page(items):
        return 0.5 * max(1, -(-(items * size) // 4096))

    return full * page(PAGE_SIZE) + (page(rest) if rest or not full else 0.0)


def listing_rru(n, shards=SHARDS, signed_in=False):
    per_shard = -(-n // shards)
    return sum(shard_rru(per_shard, s, signed_in) for s in range(shards))


def job_rate(shards=SHARDS):
    return MANAGEMENT_RPS / min(shards, FANOUT_WORKERS)


def job_seconds(members, rate):
    """Posting to `members` at `rate`, or slower when the CPU cannot keep up."""
    return members / min(rate, VCPU * 1e6 / CPU_PER_POST_US)


def worker_cpu_share(rate, cpu_per_post_us=CPU_PER_POST_US):
    """The share of a 256 MB function's vCPU that `rate` posts a second take."""
    return rate * cpu_per_post_us / 1e6 / VCPU


def big_event(n, shards=SHARDS, events=1, signed_in=False):
    """`events` sends, each to a sharded room of n members through the workers."""
    per_shard = -(-n // shards)
    job_ms = job_seconds(per_shard, job_rate(shards)) * 1000 + WORKER_OVERHEAD_MS
    msgs = events * (n + 1)  # the frame in, the ack out, n - 1 posts
    fifo = events * (-(-shards // FIFO_SEND_BATCH) + FIFO_REQUESTS_PER_JOB_RECEIVED * shards)
    wru = events * (PUBLISH_WRU + CLAIM_WRU * shards)
    rru = events * (PUBLISH_RRU + listing_rru(n, shards, signed_in))
    worker_gbs = events * shards * MEMORY_GB * -(-job_ms // 1) / 1000
    waves = -(-shards // FANOUT_WORKERS)
    return {
        "messages": msgs,
        "messages $": messages_cost(msgs),
        "invocations": events * (1 + shards),
        "job s": job_ms / 1000,
        "GB-s": worker_gbs,
        "lambda $": lambda_cost(events * shards, job_ms) + lambda_cost(events, PUBLISH_MS),
        "SQS requests": fifo,
        "SQS $": fifo * SQS_FIFO_REQUEST,
        "WRU": wru,
        "RRU": rru,
        "dynamodb $": wru * WRU + rru * RRU,
        "quota s": n / MANAGEMENT_RPS,
        "reach s": waves * job_ms / 1000,
    }


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
    # Pings and rotations are 2 messages each; past a billion a month the lower
    # tier applies, so a message costs the month's average.
    msgs = 2 * (pings + rotations)
    message = messages_cost(msgs) / msgs
    return {
        "connection-minutes $": minutes * CONNECTION_MINUTE,
        "pings": pings,
        "ping messages $": pings * 2 * message,
        "ping lambda $": lambda_cost(pings, PING_MS),
        "ping writes $": pings * PING_WRU * WRU,
        "pings $": pings * (2 * message + PING_WRU * WRU) + lambda_cost(pings, PING_MS),
        "ping write share": PING_WRU * WRU
        / (2 * MESSAGE + PING_WRU * WRU + lambda_cost(1, PING_MS)),
        "rotations": rotations,
        "rotation WRU": wru,
        "rotation writes $": rotations * wru * WRU,
        "rotations $": rotations * (2 * message + wru * WRU + ROTATION_RRU * RRU)
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


# Connections one c7g.large (4 GB) is given: Socket.io 4.8 held 10,000 idle
# ones in 194 MB; 50,000 leaves room for traffic (assumed, not measured).
SOCKETIO_PER_INSTANCE = 50_000


def socketio(n):
    """c7g.large instances (two at least) behind an ALB with a small Redis for
    the adapter, a month."""
    hours = MONTH_MINUTES / 60
    instances = max(2, -(-n // SOCKETIO_PER_INSTANCE))
    lcu = max(n / 3000, 1.0)  # active connections per LCU dominate here
    return (
        instances * C7G_LARGE_HOUR * hours
        + (ALB_HOUR + lcu * LCU_HOUR) * hours
        + REDIS_SMALL_HOUR * hours
    )


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
    for n in ROOMS + BIG_ROOMS:
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
    big_rooms()
    for n in ROOMS:
        total, latency, cpu = send_ms(n)
        print(f"N={n}: fan-out latency-bound {latency:.0f} ms, CPU-bound at 256 MB {cpu:.0f} ms")
    s10 = sends(10)
    share = SEND_WRU * WRU * SENDS / (s10["messages $"] + s10["lambda $"] + s10["dynamodb $"])
    print(f"The rate counter's write is {share:.0%} of a send to a room of 10.")
    print(f"\nThe rate counter's write is {staying_connected(1)['ping write share']:.0%} of a ping's cost.")


def big_rooms():
    for events, title in [
        (1, f"One `send` to a sharded room of N members (K = {SHARDS}, through the workers):"),
        (SENDS, f"{SENDS:,} `send`s to a sharded room of N members (K = {SHARDS}):"),
    ]:
        rows = []
        for n in BIG_ROOMS:
            b = big_event(n, events=events)
            total = b["messages $"] + b["lambda $"] + b["SQS $"] + b["dynamodb $"]
            rows.append([
                f"{n:,}", f"{b['messages']:,.0f}", money4(b["messages $"]),
                f"{b['invocations']:,.0f}", f"{b['GB-s']:,.0f}", money4(b["lambda $"]),
                f"{b['SQS requests']:,.0f}", money4(b["SQS $"]), f"{b['WRU']:,.0f}",
                f"{b['RRU']:,.0f}", money4(b["dynamodb $"]), money4(total),
                f"{b['quota s']:,.0f} s / {b['reach s']:,.1f} s",
            ])
        table(
            title,
            ["N", "API Gateway messages", "messages", "Lambda invocations", "GB-s", "Lambda",
             "SQS FIFO requests", "SQS", "WRU", "RRU", "DynamoDB", "total",
             "to reach everyone: quota bound / one job"],
            rows,
        )
    rows = []
    for n in BIG_ROOMS:
        for signed_in in (False, True):
            rru = listing_rru(n, signed_in=signed_in)
            rows.append([
                f"{n:,}", "signed in" if signed_in else "anonymous",
                f"{membership_bytes(SHARDS - 1, signed_in)} B", f"{rru:,.1f}",
                money4(rru * RRU), money(rru * RRU * SENDS),
            ])
    table(
        f"Listing the members once (K = {SHARDS}, {PAGE_SIZE} items a page):",
        ["N", "members", "membership item", "RRU", "per event", "per million events"],
        rows,
    )
    rows = []
    for k in (2, 4, 8, 16):
        rate = job_rate(k)
        rows.append([
            f"{k}", f"{rate:,.0f}/s", f"{worker_cpu_share(rate):.0%}",
            f"{worker_cpu_share(rate, 40.0):.0%}",
            f"{job_seconds(-(-1_000_000 // k), rate):,.0f} s",
        ])
    table(
        "A worker's CPU at 256 MB (a seventh of a vCPU) for its rate:",
        ["K", "posts a second per job", f"CPU at {CPU_PER_POST_US:.0f} µs a post",
         "CPU at 40 µs a post (measured)", "posting to 1,000,000 members"],
        rows,
    )
    b = big_event(1_000_000)
    workers = b["lambda $"] + b["SQS $"] + b["dynamodb $"]
    print(
        f"A worker sustains {VCPU * 1e6 / CPU_PER_POST_US:,.0f} posts a second at "
        f"{CPU_PER_POST_US:.0f} µs a post ({VCPU * 1e6 / 40.0:,.0f} at 40 µs): 625/s is well "
        f"within it. Workers' Lambda + SQS + DynamoDB per event to 1,000,000: "
        f"{money4(workers)}, {workers / b['messages $']:.2%} of the messages' "
        f"{money4(b['messages $'])}. One job at 1,000,000 members takes {b['job s']:.1f} s "
        f"of the {WORKER_TIMEOUT_S} s it may.\n"
    )


def money4(x):
    """Dollars, with the cents' fractions an event's small items need."""
    if x >= 1:
        return money(x)
    return f"${x:.6f}" if x < 0.001 else f"${x:.4f}"


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
