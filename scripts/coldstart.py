#!/usr/bin/env python3
"""Cold start of roomcast's Lambda functions, measured locally.

For each function, starts the Lambda binary the way Lambda does (the runtime API
endpoint and the reserved variables in the environment, plus the template's own
variables) against a local Lambda Runtime API endpoint that this script serves,
and measures the time from starting the process to its first
`GET /2018-06-01/runtime/invocation/next`: everything the function does before it
can take an event (loading, tracing, configuration, the AWS SDK clients it builds
during init). The process is then killed; no event is served.

    cargo build --release -p roomcast-lambda
    scripts/coldstart.py --binary target/release/roomcast-lambda --runs 20

The clock starts just before the fork (Python's subprocess.Popen), so the figures
include fork and exec, and they stop when the request has been read. Credentials
and the region come from the environment given here (dummy values): no network
call is made, as on Lambda, where they are in the environment too.
"""

import argparse
import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time

NEXT = "/2018-06-01/runtime/invocation/next"

FUNCTIONS = ["connect", "disconnect", "message", "authorizer", "broadcast"]

# The template's Globals/Environment and each function's own variables
# (template.yaml), with the values a deployment would resolve them to.
COMMON_ENV = {
    "ROOMCAST_TABLE": "roomcast-Table-EXAMPLE",
    "RUST_LOG": "info",
    "ROOMCAST_MANAGEMENT_ENDPOINT": "",
}
FUNCTION_ENV = {
    "message": {"ROOMCAST_POLICIES": ""},
    "authorizer": {
        "ROOMCAST_JWT_SECRET": "0123456789abcdef0123456789abcdef",
        "ROOMCAST_JWKS_URL": "",
        "ROOMCAST_JWT_ISSUER": "https://issuer.example",
        "ROOMCAST_JWT_AUDIENCE": "roomcast",
        "ROOMCAST_JWT_LEEWAY_SECS": "30",
        "ROOMCAST_ALLOW_ANONYMOUS": "false",
    },
    "broadcast": {
        "ROOMCAST_MANAGEMENT_ENDPOINT": "https://abc123.execute-api.us-east-1.amazonaws.com/prod"
    },
}


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    """Notes the arrival of the first /next and never answers it."""

    arrived = None  # (perf_counter_ns, threading.Event), set per run

    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path == NEXT and RuntimeApi.arrived is not None:
            stamp, event = RuntimeApi.arrived
            stamp.append(time.perf_counter_ns())
            event.set()
        # Hold the request open, as Lambda does until an event arrives; the
        # process is killed meanwhile.
        time.sleep(2)

    def do_POST(self):  # noqa: N802
        # /runtime/init/error: the function failed during init.
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        sys.stderr.write(f"{self.path}: {body[:300]!r}\n")
        self.send_response(202)
        self.end_headers()
        if RuntimeApi.arrived is not None:
            RuntimeApi.arrived[1].set()

    def log_message(self, *args):
        pass


def environment(function, port):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_LAMBDA_FUNCTION_NAME": f"roomcast-{function}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/roomcast-{function}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/30/[$LATEST]0123456789abcdef",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "AWS_SESSION_TOKEN": "session-token-example",
        "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "TZ": ":UTC",
        "_HANDLER": function,
    }
    env.update(COMMON_ENV)
    env.update(FUNCTION_ENV.get(function, {}))
    return env


def one_run(binary, function, port):
    stamp, event = [], threading.Event()
    RuntimeApi.arrived = (stamp, event)
    env = environment(function, port)
    start = time.perf_counter_ns()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    got = event.wait(timeout=10)
    proc.kill()
    _, err = proc.communicate()
    RuntimeApi.arrived = None
    if not got or not stamp:
        raise SystemExit(
            f"{function}: no GET {NEXT} within 10 s; stderr: {err.decode(errors='replace')[:500]}"
        )
    return (stamp[0] - start) / 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", required=True, help="the roomcast-lambda binary")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--functions", default=",".join(FUNCTIONS))
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    results = {}
    for function in args.functions.split(","):
        one_run(args.binary, function, port)  # page cache warm, as on a warm host
        times = sorted(one_run(args.binary, function, port) for _ in range(args.runs))
        p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
        results[function] = {
            "runs": len(times),
            "median_ms": round(statistics.median(times), 2),
            "p90_ms": round(p90, 2),
            "min_ms": round(times[0], 2),
            "max_ms": round(times[-1], 2),
        }
    server.shutdown()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("| function | runs | median | p90 | min | max |")
    print("|---|---|---|---|---|---|")
    for function, r in results.items():
        print(
            f"| {function} | {r['runs']} | {r['median_ms']} ms | {r['p90_ms']} ms "
            f"| {r['min_ms']} ms | {r['max_ms']} ms |"
        )


if __name__ == "__main__":
    main()
