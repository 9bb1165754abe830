// The dashboard's backend: simulated service metrics put on roomcast's broadcast
// queue with the AWS SDK for JavaScript, as a backend service would. Each metric
// is one conflation key, updated many times a second, so the queue's consumer
// (batches of up to 100 messages or 1 s) sends only the latest value of each key
// per batch.
//
//   node publisher.mjs [--endpoint http://127.0.0.1:3001] [--rate 200]
//   node publisher.mjs --queue-url https://sqs.REGION.amazonaws.com/ACCOUNT/NAME   (a deployed stack)
//
// Node 20 or newer: package.json pins @aws-sdk/client-sqs to one version whose
// engines field is node >=20 (3.1175.0). On Node 20 that SDK prints a notice that
// versions published after the first week of January 2027 will need Node 22; the pin
// keeps those out, so the notice is turned off here.
if (Number(process.versions.node.split(".")[0]) < 22) process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
const { GetQueueUrlCommand, SendMessageBatchCommand, SQSClient } = await import("@aws-sdk/client-sqs");

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => {
    if (arg.startsWith("--")) pairs.push([arg.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
const queueUrlArg = args["queue-url"];
const endpoint = args.endpoint ?? process.env.ROOMCAST_ENDPOINT ?? (queueUrlArg ? undefined : "http://127.0.0.1:3001");
const rate = Number(args.rate ?? 200); // events per second
const room = args.room ?? "dash:metrics";

const client = new SQSClient(
  endpoint
    ? { endpoint, region: "us-east-1", credentials: { accessKeyId: "local", secretAccessKey: "local" } }
    : {},
);

// Random walks around realistic values; each is published with a fixed number of
// decimals (counts are whole numbers), which the page shows as they are.
const metrics = [
  { key: "gateway.connections", label: "WebSocket connections", unit: "", value: 1240, step: 12, min: 0, decimals: 0 },
  { key: "gateway.messages", label: "Messages / s", unit: "/s", value: 3400, step: 140, min: 0, decimals: 0 },
  { key: "api.p99", label: "API p99 latency", unit: "ms", value: 48, step: 3, min: 5, decimals: 0 },
  { key: "api.errors", label: "API error rate", unit: "%", value: 0.4, step: 0.08, min: 0, decimals: 2 },
  { key: "web-1.cpu", label: "web-1 CPU", unit: "%", value: 42, step: 4, min: 1, max: 100, decimals: 0 },
  { key: "web-2.cpu", label: "web-2 CPU", unit: "%", value: 37, step: 4, min: 1, max: 100, decimals: 0 },
  { key: "db.reads", label: "DynamoDB reads / s", unit: "/s", value: 820, step: 40, min: 0, decimals: 0 },
  { key: "queue.depth", label: "Job queue depth", unit: "", value: 18, step: 3, min: 0, decimals: 0 },
].map((m) => ({ ...m, seq: 0 }));

function next(m) {
  m.value += (Math.random() - 0.5) * 2 * m.step;
  m.value = Math.min(m.max ?? Infinity, Math.max(m.min, m.value));
  m.seq += 1;
  const scale = 10 ** m.decimals;
  const value = Math.round(m.value * scale) / scale;
  return {
    room,
    event: "metric",
    data: { key: m.key, label: m.label, unit: m.unit, value, decimals: m.decimals, seq: m.seq, t: Date.now() },
    conflate: `${room}:${m.key}`,
  };
}

const queueUrl =
  queueUrlArg ?? (await client.send(new GetQueueUrlCommand({ QueueName: "BroadcastQueue" }))).QueueUrl;
console.log(`publisher: ${rate} events/s to ${room} through ${queueUrl}`);

let sent = 0;
let failed = 0;
let turn = 0;
const TICK_MS = 50;
let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => (stopping = true));

let lastReport = Date.now();
while (!stopping) {
  const started = Date.now();
  const count = Math.max(1, Math.round((rate * TICK_MS) / 1000));
  const bodies = [];
  for (let i = 0; i < count; i++) bodies.push(next(metrics[turn++ % metrics.length]));
  const batches = [];
  for (let i = 0; i < bodies.length; i += 10) {
    const entries = bodies.slice(i, i + 10).map((b, j) => ({ Id: `m${j}`, MessageBody: JSON.stringify(b) }));
    batches.push(
      client.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries })).then(
        (out) => {
          sent += out.Successful?.length ?? 0;
          failed += out.Failed?.length ?? 0;
        },
        (e) => {
          failed += entries.length;
          console.error(`publisher: SendMessageBatch failed: ${e.name}`);
        },
      ),
    );
  }
  await Promise.all(batches);
  if (Date.now() - lastReport >= 5000) {
    console.log(`publisher: ${sent} sent, ${failed} failed`);
    lastReport = Date.now();
  }
  await new Promise((r) => setTimeout(r, Math.max(0, TICK_MS - (Date.now() - started))));
}
console.log(`publisher: stopped after ${sent} sent, ${failed} failed`);
