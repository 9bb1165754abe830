#!/usr/bin/env python3
"""roomcast's AWS bill for a room of N members, from list prices and measured inputs.

Prints the cost-model tables of docs/performance.md ("Cost model"). The inputs
are the measured figures that section names (handler durations, DynamoDB
requests and capacity units per operation); the prices are us-east-1 on-demand
list prices with the sources given there. Change them here and run again.

    scripts/costmodel.py
"""

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


def staying_connected(n):
    """A month of n members connected all the time: connection-minutes, pings,
    and the connection rotation ahead of API Gateway's 2-hour cap."""
    minutes = n * MONTH_MINUTES
    pings = minutes / PING_INTERVAL_MIN
    rotations = minutes / ROTATE_MIN
    # A rotation: authorizer + $connect + join (+ ack) + $disconnect of the old one.
    # Writes: connection item and its index entry (2), membership and its index
    # entry (2), the join's counter (2), and deleting 4 items with their index
    # entries (8); reads: the disconnect's index Query (0.5).
    rotation_wru, rotation_rru = 14.0, 0.5
    return {
        "connection-minutes $": minutes * CONNECTION_MINUTE,
        "pings": pings,
        "pings $": pings * (2 * MESSAGE + PING_WRU * WRU) + lambda_cost(pings, PING_MS),
        "ping write share": PING_WRU * WRU
        / (2 * MESSAGE + PING_WRU * WRU + lambda_cost(1, PING_MS)),
        "rotations $": rotations
        * (2 * MESSAGE + rotation_wru * WRU + rotation_rru * RRU)
        + lambda_cost(4 * rotations, 10.0),
    }


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
    for n in ROOMS:
        total, latency, cpu = send_ms(n)
        print(f"N={n}: fan-out latency-bound {latency:.0f} ms, CPU-bound at 256 MB {cpu:.0f} ms")
    s10 = sends(10)
    share = SEND_WRU * WRU * SENDS / (s10["messages $"] + s10["lambda $"] + s10["dynamodb $"])
    print(f"The rate counter's write is {share:.0%} of a send to a room of 10.")
    print(f"\nThe rate counter's write is {staying_connected(1)['ping write share']:.0%} of a ping's cost.")


if __name__ == "__main__":
    main()
