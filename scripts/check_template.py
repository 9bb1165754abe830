#!/usr/bin/env python3
"""Checks on template.yaml that cfn-lint cannot make: what `sam deploy` would get
wrong while the template is still valid CloudFormation.

Each check names the defect it guards against and fails with what to change.
scripts/test runs it after cfn-lint, with the .venv's Python (it reads the
template with cfn-lint's YAML loader, which understands the short-form tags).

    scripts/check_template.py                      # template.yaml, docs/
    scripts/check_template.py --template OTHER.yaml
    scripts/check_template.py --deployment-id      # the Deployment's logical id to use

Exit status: 0 when every check passes, 1 otherwise.
"""

import argparse
import hashlib
import itertools
import json
import re
import sys
from pathlib import Path

from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parent.parent

# What one API Gateway deployment snapshots (and so what must be redeployed when
# it changes): the API, its routes and route responses, integrations and their
# responses, authorizers and models.
SNAPSHOT_TYPES = {
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Route",
    "AWS::ApiGatewayV2::RouteResponse",
    "AWS::ApiGatewayV2::Integration",
    "AWS::ApiGatewayV2::IntegrationResponse",
    "AWS::ApiGatewayV2::Authorizer",
    "AWS::ApiGatewayV2::Model",
}
# The Handler values whose code reads the configuration, policies included, at
# cold start (crates/core: every WebSocket integration and the broadcast function).
POLICY_READERS = {"connect", "disconnect", "message", "broadcast"}
POLICY_VARIABLES = {
    "ROOMCAST_POLICIES": {"Ref": "Policies"},
    "ROOMCAST_POLICIES_PARAMETER": {"Ref": "PoliciesParameter"},
}
# Lambda's application log levels, most verbose first.
LAMBDA_LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
# Big rooms' fan-out (crates/core/src/workers): the FIFO queue of jobs, the
# Handler values that send jobs to it (a send, a broadcast to a room) with the
# variables they need, and the one that runs them.
FANOUT_QUEUE = "FanoutQueue"
JOB_SENDERS = {"message", "broadcast"}
JOB_RUNNER = "broadcast"
FANOUT_VARIABLES = {
    "ROOMCAST_FANOUT_QUEUE_URL": {"Ref": FANOUT_QUEUE},
    "ROOMCAST_MANAGEMENT_RPS": {"Ref": "ManagementRps"},
    "ROOMCAST_FANOUT_WORKERS": {"Ref": "FanoutWorkers"},
}
# Lambda's guidance for SQS event sources: the queue's visibility timeout at
# least six times the function's timeout.
VISIBILITY_FACTOR = 6
# Lambda's default function timeout, when neither the function nor Globals sets one.
LAMBDA_DEFAULT_TIMEOUT = 3


def plain(node):
    """cfn-lint's nodes as plain dicts, lists and strings."""
    return json.loads(json.dumps(node))


def load(path):
    return plain(cfn_yaml.loads(Path(path).read_text(), str(path)))


def resources(t, type_):
    return {k: v for k, v in t.get("Resources", {}).items() if v.get("Type") == type_}


def functions(t):
    return resources(t, "AWS::Serverless::Function")


def environment(t, fn):
    """A function's variables as SAM deploys them: Globals, then its own."""
    env = dict(t.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
    env.update(fn.get("Properties", {}).get("Environment", {}).get("Variables", {}))
    return env


def statements(fn):
    """Every IAM statement of a function's inline policies, with the condition it
    depends on (None: unconditional)."""
    out = []

    def walk(item, condition):
        if isinstance(item, dict) and "Fn::If" in item:
            cond, yes, _ = item["Fn::If"]
            walk(yes, cond)
        elif isinstance(item, dict) and "Statement" in item:
            for s in item["Statement"]:
                walk(s, condition)
        elif isinstance(item, dict) and "Effect" in item:
            out.append((item, condition))

    for policy in fn.get("Properties", {}).get("Policies", []):
        walk(policy, None)
    return out


def grants(fn, action, resource):
    """The condition under which `fn` may do `action` on `resource` (True: always)."""
    for s, condition in statements(fn):
        actions = s.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources_ = s.get("Resource", [])
        resources_ = resources_ if isinstance(resources_, list) else [resources_]
        if action in actions and resource in resources_:
            return condition or True
    return None


def ssm_arn(parameter):
    """The ARN of the Parameter Store parameter `parameter` names, without the
    :version or :label a name may end with (IAM matches the parameter itself)."""
    return {
        "Fn::Sub": [
            "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${Name}",
            {"Name": {"Fn::Select": [0, {"Fn::Split": [":", {"Ref": parameter}]}]}},
        ]
    }


def timeout(t, fn):
    """A function's timeout in seconds as SAM deploys it: its own, Globals', or Lambda's default."""
    own = fn.get("Properties", {}).get("Timeout")
    if own is None:
        own = t.get("Globals", {}).get("Function", {}).get("Timeout", LAMBDA_DEFAULT_TIMEOUT)
    return int(own)


def sqs_events(t):
    """(function id, function, event id, event properties, queue logical id) for
    every SQS event source whose Queue is a queue of this template."""
    out = []
    for fid, fn in functions(t).items():
        for eid, event in fn.get("Properties", {}).get("Events", {}).items():
            if event.get("Type") != "SQS":
                continue
            props = event.get("Properties", {})
            queue = props.get("Queue", {})
            qid = queue.get("Fn::GetAtt", [None])[0] if isinstance(queue, dict) else None
            out.append((fid, fn, eid, props, qid))
    return out


def is_fifo(queue):
    return str(queue.get("Properties", {}).get("FifoQueue", "")).lower() == "true"


def may_send_to(fn, queue_id):
    """Whether any statement of `fn` allows sqs:SendMessage (or a wildcard
    covering it) on the queue `queue_id` (or on every resource)."""
    arn = {"Fn::GetAtt": [queue_id, "Arn"]}
    for s, _ in statements(fn):
        if s.get("Effect") != "Allow":
            continue
        actions = s.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources_ = s.get("Resource", [])
        resources_ = resources_ if isinstance(resources_, list) else [resources_]
        sends = any(a.lower() in ("sqs:sendmessage", "sqs:*", "*") for a in actions if isinstance(a, str))
        covers = any(r == arn or r == "*" or (isinstance(r, str) and r.startswith("arn:") and r.endswith("*")) for r in resources_)
        if sends and covers:
            return True
    return False


def deployment_id(t):
    """`Deployment` and a hash of everything a deployment snapshots."""
    snapshot = {
        k: {"Type": v["Type"], "Properties": v.get("Properties", {})}
        for k, v in t.get("Resources", {}).items()
        if v.get("Type") in SNAPSHOT_TYPES
    }
    text = json.dumps(snapshot, sort_keys=True, separators=(",", ":"))
    return "Deployment" + hashlib.sha256(text.encode()).hexdigest()[:12]


class Rules:
    """Evaluates a template's Rules for given parameter values, with the rule
    functions CloudFormation has (And, Or, Not, Equals, Contains, Ref)."""

    def __init__(self, t):
        self.rules = t.get("Rules", {})

    def value(self, node, params):
        if isinstance(node, dict):
            (fn, arg), = node.items()
            if fn == "Ref":
                return params[arg]
            if fn == "Fn::Equals":
                a, b = (self.value(x, params) for x in arg)
                return str(a) == str(b)
            if fn == "Fn::Not":
                return not self.value(arg[0], params)
            if fn == "Fn::And":
                return all(self.value(x, params) for x in arg)
            if fn == "Fn::Or":
                return any(self.value(x, params) for x in arg)
            if fn == "Fn::Contains":
                items, x = arg
                return str(self.value(x, params)) in [str(self.value(i, params)) for i in items]
            raise ValueError(f"rule function {fn} is not evaluated here")
        return node

    def failed(self, params):
        """Names of the rules these parameter values break."""
        broken = []
        for name, rule in self.rules.items():
            if "RuleCondition" in rule and not self.value(rule["RuleCondition"], params):
                continue
            if not all(self.value(a["Assert"], params) for a in rule.get("Assertions", [])):
                broken.append(name)
        return broken


def defaults(t):
    return {k: str(v.get("Default", "")) for k, v in t.get("Parameters", {}).items()}


# ---------------------------------------------------------------------------
# The checks. Each returns a list of problems (empty: passed).
# ---------------------------------------------------------------------------


def check_policies_reach_every_reader(t):
    """Namespace policies reach every function that applies them, from Globals,
    and those functions may read PoliciesParameter."""
    problems = []
    globals_env = t.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    for name, want in POLICY_VARIABLES.items():
        if globals_env.get(name) != want:
            problems.append(f"Globals.Function.Environment.Variables.{name} must be {want}")
    for fid, fn in functions(t).items():
        own = fn.get("Properties", {}).get("Environment", {}).get("Variables", {})
        for name in POLICY_VARIABLES:
            if name in own:
                problems.append(f"{fid} sets {name} itself: every function must get the same document")
        if fn.get("Properties", {}).get("Handler") in POLICY_READERS:
            env = environment(t, fn)
            for name, want in POLICY_VARIABLES.items():
                if env.get(name) != want:
                    problems.append(f"{fid} runs without {name} = {want}")
            if grants(fn, "ssm:GetParameter", ssm_arn("PoliciesParameter")) != "HasPoliciesParameter":
                problems.append(f"{fid} needs ssm:GetParameter on PoliciesParameter (condition HasPoliciesParameter)")
    params = t.get("Parameters", {})
    if "PoliciesParameter" not in params:
        problems.append("no PoliciesParameter: a document over Lambda's 4 KB of variables cannot be given")
    rules = Rules(t)
    both = dict(defaults(t), Policies="{}", PoliciesParameter="/roomcast/policies")
    if not rules.failed(both):
        problems.append("a rule must refuse Policies and PoliciesParameter together")
    return problems


def check_jwt_secret_not_in_plaintext(t):
    """No secret reaches an environment variable: NoEcho parameters stay out of
    every function's variables, and the authorizer reads the HS256 secret from
    Parameter Store by name."""
    problems = []
    params = t.get("Parameters", {})
    secret = [k for k, v in params.items() if str(v.get("NoEcho", "")).lower() == "true"]
    for fid, fn in functions(t).items():
        for name, value in environment(t, fn).items():
            if value in [{"Ref": s} for s in secret]:
                problems.append(f"{fid}: {name} holds the NoEcho parameter {value['Ref']} in plain text")
    authorizers = [fid for fid, fn in functions(t).items() if fn["Properties"].get("Handler") == "authorizer"]
    if "JwtSecretParameter" not in params:
        problems.append("no JwtSecretParameter: the HS256 secret must be read from Parameter Store")
    for fid in authorizers:
        fn = functions(t)[fid]
        env = environment(t, fn)
        if env.get("ROOMCAST_JWT_SECRET_PARAMETER") != {"Ref": "JwtSecretParameter"}:
            problems.append(f"{fid}: ROOMCAST_JWT_SECRET_PARAMETER must be the JwtSecretParameter name")
        if env.get("ROOMCAST_JWT_SECRET", "") != "":
            problems.append(f"{fid}: ROOMCAST_JWT_SECRET must be empty in the stack")
        if grants(fn, "ssm:GetParameter", ssm_arn("JwtSecretParameter")) is None:
            problems.append(f"{fid} needs ssm:GetParameter on JwtSecretParameter")
    for fid, fn in functions(t).items():
        if fid not in authorizers and grants(fn, "ssm:GetParameter", ssm_arn("JwtSecretParameter")):
            problems.append(f"{fid} may read the JWT secret: only the authorizer needs it")
    return problems


def check_deployment_follows_routes(t):
    """A route change takes a new snapshot: the Deployment's logical id carries a
    hash of the routes, so CloudFormation creates a new Deployment (an update in
    place takes none), and the Stage points at it."""
    problems = []
    deployments = resources(t, "AWS::ApiGatewayV2::Deployment")
    stages = resources(t, "AWS::ApiGatewayV2::Stage")
    want = deployment_id(t)
    if list(deployments) != [want]:
        problems.append(
            f"the Deployment must be the one resource {want} (have {sorted(deployments)}): "
            "rename it (and the Stage's DeploymentId) after changing routes"
        )
    for sid, stage in stages.items():
        props = stage.get("Properties", {})
        if props.get("AutoDeploy"):
            problems.append(f"{sid}: AutoDeploy and a Deployment resource would fight")
        if props.get("DeploymentId") != {"Ref": want}:
            problems.append(f"{sid}: DeploymentId must be !Ref {want}")
    snapshot = {
        k for k, v in t.get("Resources", {}).items()
        if v.get("Type") in SNAPSHOT_TYPES - {"AWS::ApiGatewayV2::Api", "AWS::ApiGatewayV2::Integration"}
    }
    for did, d in deployments.items():
        depends = d.get("DependsOn", [])
        depends = {depends} if isinstance(depends, str) else set(depends)
        if snapshot - depends:
            problems.append(f"{did} must DependsOn {sorted(snapshot - depends)} to snapshot them")
    return problems


def check_queue_concurrency_bounded(t):
    """A queue backlog cannot take the account's Lambda concurrency: the SQS event
    source mapping has a MaximumConcurrency, from a parameter."""
    problems = []
    params = t.get("Parameters", {})
    found = False
    for fid, fn in functions(t).items():
        for eid, event in fn.get("Properties", {}).get("Events", {}).items():
            if event.get("Type") != "SQS":
                continue
            found = True
            ref = event.get("Properties", {}).get("ScalingConfig", {}).get("MaximumConcurrency")
            if not (isinstance(ref, dict) and ref.get("Ref") in params):
                problems.append(f"{fid}.Events.{eid}: ScalingConfig.MaximumConcurrency must be a parameter")
                continue
            p = params[ref["Ref"]]
            if not (2 <= int(p.get("MinValue", 0)) and int(p.get("MaxValue", 10**9)) <= 1000):
                problems.append(f"{ref['Ref']}: MinValue/MaxValue must stay within Lambda's 2 to 1,000")
    if not found:
        problems.append("no SQS event source")
    return problems


def check_dashboard_link(t):
    """The DashboardUrl output opens the console (console.aws.amazon.com)."""
    value = json.dumps(t.get("Outputs", {}).get("DashboardUrl", {}).get("Value", ""))
    if "console.aws.amazon.com/cloudwatch/" not in value or "URLSuffix" in value:
        return [f"DashboardUrl must point at https://<region>.console.aws.amazon.com/cloudwatch/, not {value}"]
    return []


def check_log_level_reaches_lambda(t):
    """With LogFormat JSON, Lambda filters application logs at INFO unless
    ApplicationLogLevel says otherwise: every function maps LogLevel there, as
    verbose as RUST_LOG and never stricter than INFO (EMF lines have no level)."""
    problems = []
    mapping = t.get("Mappings", {}).get("LogLevels", {})
    allowed = t.get("Parameters", {}).get("LogLevel", {}).get("AllowedValues", [])
    for level in allowed:
        got = mapping.get(level, {}).get("ApplicationLogLevel")
        rust = level.upper()
        if got not in LAMBDA_LEVELS:
            problems.append(f"Mappings.LogLevels.{level}.ApplicationLogLevel missing or not a Lambda level")
        elif LAMBDA_LEVELS.index(got) > min(LAMBDA_LEVELS.index(rust), LAMBDA_LEVELS.index("INFO")):
            problems.append(f"LogLevel {level}: ApplicationLogLevel {got} would drop lines RUST_LOG or EMF emits")
    want = {"Fn::FindInMap": ["LogLevels", {"Ref": "LogLevel"}, "ApplicationLogLevel"]}
    for fid, fn in functions(t).items():
        logging = fn.get("Properties", {}).get("LoggingConfig", {})
        if logging.get("LogFormat") == "JSON" and logging.get("ApplicationLogLevel") != want:
            problems.append(f"{fid}: LoggingConfig.ApplicationLogLevel must be {want}")
    return problems


def check_throttle_alarm_covers_indexes(t):
    """The DynamoDB throttle alarm counts the indexes' throttles
    (GlobalSecondaryIndexName dimension) as well as the table's."""
    problems = []
    tables = resources(t, "AWS::DynamoDB::Table")
    alarm = t.get("Resources", {}).get("DynamoThrottleAlarm", {}).get("Properties", {})
    metrics = alarm.get("Metrics", [])
    seen = set()
    for m in metrics:
        stat = m.get("MetricStat", {}).get("Metric", {})
        dims = {d["Name"]: json.dumps(d["Value"]) for d in stat.get("Dimensions", [])}
        seen.add((stat.get("MetricName"), dims.get("TableName"), dims.get("GlobalSecondaryIndexName")))
    for tid, table in tables.items():
        for name in ["ReadThrottleEvents", "WriteThrottleEvents"]:
            for index in [None] + [i["IndexName"] for i in table["Properties"].get("GlobalSecondaryIndexes", [])]:
                key = (name, json.dumps({"Ref": tid}), None if index is None else json.dumps(index))
                if key not in seen:
                    problems.append(f"DynamoThrottleAlarm lacks {name} of {tid}" + (f" index {index}" if index else ""))
    expressions = [m for m in metrics if m.get("ReturnData", True) and "Expression" in m]
    ids = [m["Id"] for m in metrics if "MetricStat" in m]
    if len(expressions) != 1 or any(i not in expressions[0]["Expression"] for i in ids):
        problems.append("DynamoThrottleAlarm's one returned expression must add up every metric")
    return problems


def check_dead_letters_keep_alarming(t):
    """Every dead-letter queue (the broadcasts', the fan-out jobs') has an alarm
    on its ApproximateAgeOfOldestMessage that does not return to OK on missing
    data while messages wait."""
    problems = []
    queues = resources(t, "AWS::SQS::Queue")
    dead_letter = ["BroadcastDeadLetterQueue"]
    for q in queues.values():
        target = q.get("Properties", {}).get("RedrivePolicy", {}).get("deadLetterTargetArn", {})
        if isinstance(target, dict) and "Fn::GetAtt" in target and target["Fn::GetAtt"][0] not in dead_letter:
            dead_letter.append(target["Fn::GetAtt"][0])
    for qid in dead_letter:
        alarmed = False
        for aid, alarm in resources(t, "AWS::CloudWatch::Alarm").items():
            p = alarm.get("Properties", {})
            if (
                p.get("Namespace") == "AWS/SQS"
                and p.get("MetricName") == "ApproximateAgeOfOldestMessage"
                and {"Fn::GetAtt": [qid, "QueueName"]} in [d.get("Value") for d in p.get("Dimensions", [])]
            ):
                alarmed = True
                if p.get("TreatMissingData") in (None, "missing", "notBreaching"):
                    problems.append(f"{aid}: TreatMissingData must keep the state (ignore) when an idle queue stops reporting")
        if not alarmed:
            problems.append(f"no alarm on {qid}'s ApproximateAgeOfOldestMessage")
    return problems


def check_dashboard_graphs_every_frame(t):
    """The dashboard graphs frames.history and frames.presence with the others."""
    body = json.dumps(t.get("Resources", {}).get("Dashboard", {}).get("Properties", {}).get("DashboardBody", ""))
    return [f"the dashboard lacks {m}" for m in ["frames.history", "frames.presence"] if f'\\"{m}\\"' not in body]


def check_management_endpoint(t):
    """The @connections endpoint is one value for every function: this stage's
    execute-api endpoint (right behind a custom domain too), or the
    ManagementEndpoint parameter."""
    problems = []
    if "ManagementEndpoint" not in t.get("Parameters", {}):
        problems.append("no ManagementEndpoint parameter")
    stage_url = "https://${WebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${StageName}"
    want = {"Fn::If": ["HasManagementEndpoint", {"Ref": "ManagementEndpoint"}, {"Fn::Sub": stage_url}]}
    for fid, fn in functions(t).items():
        if fn["Properties"].get("Handler") == "authorizer":
            continue
        if environment(t, fn).get("ROOMCAST_MANAGEMENT_ENDPOINT") != want:
            problems.append(f"{fid}: ROOMCAST_MANAGEMENT_ENDPOINT must be {want}")
    output = t.get("Outputs", {}).get("ManagementEndpoint", {}).get("Value")
    if output != want:
        problems.append(f"Outputs.ManagementEndpoint must be {want}")
    return problems


def check_stage_throttle(t):
    """The stage throttle's rate and burst are parameters, and a rule refuses a
    burst below the rate (checked here for every pair of allowed values)."""
    problems = []
    params = t.get("Parameters", {})
    for sid, stage in resources(t, "AWS::ApiGatewayV2::Stage").items():
        s = stage.get("Properties", {}).get("DefaultRouteSettings", {})
        for prop in ["ThrottlingRateLimit", "ThrottlingBurstLimit"]:
            ref = s.get(prop)
            if not (isinstance(ref, dict) and ref.get("Ref") in params):
                problems.append(f"{sid}: DefaultRouteSettings.{prop} must be a parameter")
    if problems:
        return problems
    rules = Rules(t)
    rate_values = params["ThrottlingRateLimit"].get("AllowedValues", [])
    burst_values = params["ThrottlingBurstLimit"].get("AllowedValues", [])
    if not rate_values or not burst_values:
        return ["ThrottlingRateLimit and ThrottlingBurstLimit need AllowedValues a rule can compare"]
    for rate, burst in itertools.product(rate_values, burst_values):
        values = dict(defaults(t), ThrottlingRateLimit=rate, ThrottlingBurstLimit=burst)
        refused = bool(rules.failed(values))
        if refused != (float(burst) < float(rate)):
            problems.append(f"rate {rate}, burst {burst}: the rules {'refuse' if refused else 'accept'} it")
    if rules.failed(defaults(t)):
        problems.append(f"the defaults break {rules.failed(defaults(t))}")
    return problems


def check_operations_doc_names_every_parameter(t):
    """docs/operations.md describes every parameter (deploy, update, roll back)."""
    doc = (ROOT / "docs" / "operations.md").read_text()
    problems = [f"docs/operations.md does not describe the parameter {p}" for p in t.get("Parameters", {}) if f"`{p}`" not in doc]
    for heading in ["## Deploy", "## Update", "## Roll back"]:
        if heading not in doc:
            problems.append(f"docs/operations.md has no '{heading}' section")
    return problems


def check_protocol_doc_matches_code(t):
    """docs/protocol.md gives the fan-out concurrency the code uses, and docs/
    describes every variable the template sets."""
    problems = []
    doc = (ROOT / "docs" / "protocol.md").read_text()
    code = "\n".join(p.read_text() for p in (ROOT / "crates").rglob("*.rs"))
    m = re.search(r"DEFAULT_FANOUT_CONCURRENCY: usize = (\d+);", code)
    if not m:
        return ["DEFAULT_FANOUT_CONCURRENCY not found under crates/"]
    row = re.search(r"^\| `ROOMCAST_FANOUT_CONCURRENCY` \| (\d+) \|", doc, re.M)
    if not row or row.group(1) != m.group(1):
        problems.append(f"docs/protocol.md's ROOMCAST_FANOUT_CONCURRENCY default must be {m.group(1)}")
    if re.search(r"posts \(default (\d+)\)", doc) and re.search(r"posts \(default (\d+)\)", doc).group(1) != m.group(1):
        problems.append(f"docs/protocol.md's fan-out section must say default {m.group(1)}")
    docs = "\n".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    declared = set()
    for fn in functions(t).values():
        declared |= set(environment(t, fn))
    for name in sorted(declared):
        if name.startswith("ROOMCAST_") and f"`{name}`" not in docs:
            problems.append(f"no page in docs/ describes {name}, which template.yaml sets")
    if "sets only" in doc:
        problems.append("docs/protocol.md still says the template sets only one variable")
    return problems


def check_fanout_queue_is_fifo(t):
    """Big rooms' fan-out jobs go through a FIFO queue (a shard's events in
    order), deduplicated by the ids the senders give (not by content), kept no
    longer than a job's claim (crates/core/src/claims.rs IDEMPOTENCY_TTL), with a FIFO
    dead-letter queue (SQS refuses a standard one for a FIFO queue), both
    encrypted."""
    queues = resources(t, "AWS::SQS::Queue")
    if FANOUT_QUEUE not in queues:
        return [f"no {FANOUT_QUEUE} (AWS::SQS::Queue) for big rooms' fan-out jobs"]
    problems = []
    props = queues[FANOUT_QUEUE].get("Properties", {})
    if not is_fifo(queues[FANOUT_QUEUE]):
        problems.append(f"{FANOUT_QUEUE} must be FifoQueue: true (jobs of a shard run in order)")
    if str(props.get("ContentBasedDeduplication", "false")).lower() != "false":
        problems.append(f"{FANOUT_QUEUE}: ContentBasedDeduplication must be false (the senders give each job's deduplication id)")
    if props.get("FifoThroughputLimit") == "perMessageGroupId" and props.get("DeduplicationScope") != "messageGroup":
        problems.append(f"{FANOUT_QUEUE}: high throughput (FifoThroughputLimit perMessageGroupId) needs DeduplicationScope messageGroup")
    target = props.get("RedrivePolicy", {}).get("deadLetterTargetArn", {})
    dlq = target.get("Fn::GetAtt", [None])[0] if isinstance(target, dict) else None
    if dlq not in queues:
        problems.append(f"{FANOUT_QUEUE} needs a RedrivePolicy to a dead-letter queue of this template")
    elif not is_fifo(queues[dlq]):
        problems.append(f"{dlq}: the dead-letter queue of a FIFO queue must be FIFO")
    code = (ROOT / "crates" / "core" / "src" / "claims.rs").read_text()
    m = re.search(r"IDEMPOTENCY_TTL: Duration = Duration::from_secs\(([\d_ *]+)\);", code)
    if not m:
        problems.append("IDEMPOTENCY_TTL not found in crates/core/src/claims.rs")
    else:
        ttl = 1
        for factor in m.group(1).split("*"):
            ttl *= int(factor.strip().replace("_", ""))
        retention = int(props.get("MessageRetentionPeriod", 345600))
        if retention > ttl:
            problems.append(f"{FANOUT_QUEUE}: MessageRetentionPeriod {retention} s outlives a job's claim ({ttl} s): a late redelivery would post again")
    for qid in [FANOUT_QUEUE] + ([dlq] if dlq in queues else []):
        q = queues[qid].get("Properties", {})
        if not (str(q.get("SqsManagedSseEnabled", "")).lower() == "true" or "KmsMasterKeyId" in q):
            problems.append(f"{qid} must be encrypted (SqsManagedSseEnabled or KmsMasterKeyId)")
    return problems


def check_fanout_jobs_run_one_at_a_time(t):
    """The broadcast function runs the fan-out queue's jobs one per invocation
    (BatchSize 1), reports failures per item, and at most FanoutWorkers at once
    (MaximumConcurrency), the workers each job's share of ManagementRps assumes."""
    runners = [(fid, eid, props) for fid, fn, eid, props, qid in sqs_events(t) if qid == FANOUT_QUEUE]
    if not runners:
        return [f"no SQS event source on {FANOUT_QUEUE}: nothing runs the jobs"]
    problems = []
    params = t.get("Parameters", {})
    for fid, eid, props in runners:
        where = f"{fid}.Events.{eid}"
        if functions(t)[fid]["Properties"].get("Handler") != JOB_RUNNER:
            problems.append(f"{where}: jobs are run by the {JOB_RUNNER} handler")
        if str(props.get("BatchSize")) != "1":
            problems.append(f"{where}: BatchSize must be 1 (a job may take the whole timeout)")
        if props.get("ScalingConfig", {}).get("MaximumConcurrency") != {"Ref": "FanoutWorkers"}:
            problems.append(f"{where}: ScalingConfig.MaximumConcurrency must be !Ref FanoutWorkers")
        if "ReportBatchItemFailures" not in props.get("FunctionResponseTypes", []):
            problems.append(f"{where}: FunctionResponseTypes must include ReportBatchItemFailures")
        if "MaximumBatchingWindowInSeconds" in props:
            problems.append(f"{where}: FIFO sources take no MaximumBatchingWindowInSeconds")
    workers = params.get("FanoutWorkers")
    if workers is None:
        problems.append("no FanoutWorkers parameter")
    elif not (int(workers.get("MinValue", 0)) >= 2 and int(workers.get("MaxValue", 10**9)) <= 1000):
        problems.append("FanoutWorkers: MinValue/MaxValue must stay within MaximumConcurrency's 2 to 1,000")
    rps = params.get("ManagementRps")
    if rps is None or int(rps.get("MinValue", 0)) < 1:
        problems.append("ManagementRps must be a parameter with MinValue 1 or more")
    return problems


def check_job_senders_configured(t):
    """The functions that send jobs (message, broadcast) get the queue's URL,
    ManagementRps and FanoutWorkers, the same values in both (a job's rate is
    computed where it is sent); the other functions get no queue URL."""
    problems = []
    senders = 0
    for fid, fn in functions(t).items():
        env = environment(t, fn)
        if fn.get("Properties", {}).get("Handler") in JOB_SENDERS:
            senders += 1
            for name, want in FANOUT_VARIABLES.items():
                if env.get(name) != want:
                    problems.append(f"{fid} runs without {name} = {want}")
        elif "ROOMCAST_FANOUT_QUEUE_URL" in env:
            problems.append(f"{fid} sends no fan-out jobs: it needs no ROOMCAST_FANOUT_QUEUE_URL")
    if senders < len(JOB_SENDERS):
        problems.append(f"functions with Handler {sorted(JOB_SENDERS)} not all found")
    return problems


def check_only_senders_may_queue_jobs(t):
    """Least privilege on the fan-out queue: sqs:SendMessage (which also covers
    SendMessageBatch) for the message and broadcast functions, unconditionally,
    and for no other function."""
    problems = []
    arn = {"Fn::GetAtt": [FANOUT_QUEUE, "Arn"]}
    for fid, fn in functions(t).items():
        handler = fn.get("Properties", {}).get("Handler")
        if handler in JOB_SENDERS:
            if grants(fn, "sqs:SendMessage", arn) is not True:
                problems.append(f"{fid} needs sqs:SendMessage on {FANOUT_QUEUE} (unconditional)")
        elif may_send_to(fn, FANOUT_QUEUE):
            problems.append(f"{fid} may send to {FANOUT_QUEUE}: only {sorted(JOB_SENDERS)} send jobs")
    return problems


def check_queue_visibility_covers_timeout(t):
    """Every queue a function consumes (the fan-out queue among them) hides a
    received message for at least 6x the function's timeout, as Lambda advises,
    so a job or batch still running is not handed to a second invocation."""
    problems = []
    queues = resources(t, "AWS::SQS::Queue")
    consumed = set()
    for fid, fn, eid, props, qid in sqs_events(t):
        if qid not in queues:
            problems.append(f"{fid}.Events.{eid}: Queue must be !GetAtt <queue of this template>.Arn")
            continue
        consumed.add(qid)
        visibility = int(queues[qid].get("Properties", {}).get("VisibilityTimeout", 30))
        need = VISIBILITY_FACTOR * timeout(t, fn)
        if visibility < need:
            problems.append(f"{qid}: VisibilityTimeout {visibility} s is under {VISIBILITY_FACTOR} x {fid}'s {timeout(t, fn)} s timeout ({need} s)")
    if FANOUT_QUEUE not in consumed:
        problems.append(f"{FANOUT_QUEUE} is consumed by no function")
    return problems


def check_dashboard_graphs_workers(t):
    """The dashboard graphs the fan-out workers' metrics and the fan-out queue's
    backlog and age."""
    body = t.get("Resources", {}).get("Dashboard", {}).get("Properties", {}).get("DashboardBody", "")
    body = body.get("Fn::Sub", "") if isinstance(body, dict) else body
    body = body[0] if isinstance(body, list) else body
    try:
        widgets = json.loads(body).get("widgets", [])
    except (ValueError, AttributeError) as e:
        return [f"the dashboard body is not JSON: {e}"]
    graphed = set()
    for w in widgets:
        for m in w.get("properties", {}).get("metrics", []):
            names = [x for x in m if isinstance(x, str)]
            if len(names) >= 2:
                graphed.add((names[0], names[1], tuple(names[2:4])))
    problems = []
    for name in ["fanout_jobs", "fanout_jobs_run", "fanout_posts_per_sec", "fanout_shards", "fanout_throttled_retries", "fanout_ms"]:
        if ("roomcast", name, ("Stage", "${StageName}")) not in graphed:
            problems.append(f"the dashboard lacks {name}")
    for name in ["ApproximateAgeOfOldestMessage", "ApproximateNumberOfMessagesVisible"]:
        if ("AWS/SQS", name, ("QueueName", f"${{{FANOUT_QUEUE}.QueueName}}")) not in graphed:
            problems.append(f"the dashboard lacks {FANOUT_QUEUE}'s {name}")
    return problems


CHECKS = [
    check_policies_reach_every_reader,
    check_jwt_secret_not_in_plaintext,
    check_deployment_follows_routes,
    check_queue_concurrency_bounded,
    check_dashboard_link,
    check_log_level_reaches_lambda,
    check_throttle_alarm_covers_indexes,
    check_dead_letters_keep_alarming,
    check_dashboard_graphs_every_frame,
    check_management_endpoint,
    check_stage_throttle,
    check_operations_doc_names_every_parameter,
    check_protocol_doc_matches_code,
    check_fanout_queue_is_fifo,
    check_fanout_jobs_run_one_at_a_time,
    check_job_senders_configured,
    check_only_senders_may_queue_jobs,
    check_queue_visibility_covers_timeout,
    check_dashboard_graphs_workers,
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", default=str(ROOT / "template.yaml"))
    parser.add_argument("--deployment-id", action="store_true", help="print the Deployment's logical id and exit")
    args = parser.parse_args()
    t = load(args.template)
    if args.deployment_id:
        print(deployment_id(t))
        return 0
    failed = 0
    for check in CHECKS:
        problems = check(t)
        name = check.__name__.removeprefix("check_")
        print(f"{'ok  ' if not problems else 'FAIL'} {name}")
        for p in problems:
            print(f"       {p}")
        failed += bool(problems)
    print(f"{len(CHECKS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
