// The demo page: a chat room (chat:lobby) and a live dashboard (dash:metrics) on one
// @roomcast/client connection. Plain DOM, no framework.
//
// Chat leans on the server (demo/policies.json turns these on for `chat:`): earlier
// messages come from the room's history, "here now" from presence and its join and
// leave events, and after a dropped connection the client rejoins with `since` and
// the server replays what was missed. Messages are keyed by the room's epoch and
// offset, so a history reload after an unrecoverable gap shows each one once.
import { connect } from "./vendor/roomcast-client.js";

const CHAT = "chat:lobby";
const DASH = "dash:metrics";
const NAMES = ["ada", "grace", "linus", "barbara", "ken", "margaret", "dennis", "radia"];

const params = new URLSearchParams(location.search);
const name =
  params.get("name") ||
  sessionStorage.getItem("roomcast-demo-name") ||
  `${NAMES[Math.floor(Math.random() * NAMES.length)]}-${Math.floor(Math.random() * 90 + 10)}`;
sessionStorage.setItem("roomcast-demo-name", name);
const url = params.get("ws") || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/local`;

const $ = (id) => document.getElementById(id);
$("me").textContent = name;
$("url").textContent = url;

const rc = connect(url, { reconnect: { initialDelayMs: 200, maxDelayMs: 3000 } });
rc.onState((s) => {
  $("state").dataset.state = s;
  $("state").textContent = s;
});
rc.onError((e) => console.warn("roomcast:", e.code, e.message));

// ---------------------------------------------------------------- chat
const messages = new Map(); // "epoch:offset" (or a local key while sending) -> {name, text, ts, mine, pending}
let pendingSeq = 0;

function addMessage(key, m) {
  messages.set(key, m);
  renderMessages();
}

function renderMessages() {
  const list = $("messages");
  const sorted = [...messages.entries()].sort(([, a], [, b]) => a.ts - b.ts);
  list.replaceChildren(
    ...sorted.map(([key, m]) => {
      const li = document.createElement("li");
      li.className = `${m.mine ? "mine" : ""} ${m.pending ? "pending" : ""}`;
      li.dataset.key = key;
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = `${m.name} · ${new Date(m.ts).toLocaleTimeString()}`;
      const text = document.createElement("span");
      text.className = "text";
      text.textContent = m.text;
      li.append(meta, text);
      return li;
    }),
  );
  list.scrollTop = list.scrollHeight;
}

/** A stored or live `message` frame: shown once per epoch and offset. */
function receive(frame) {
  const d = frame.data;
  if (!d || typeof d.text !== "string") return;
  const who = String(d.name ?? "?");
  const from = frame.from?.connectionId;
  if (from) names.set(from, who);
  addMessage(`${frame.epoch}:${frame.offset}`, { name: who, text: d.text, ts: frame.ts, mine: who === name });
}

$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("text").value = "";
  const local = `pending:${++pendingSeq}`;
  const ts = Date.now();
  addMessage(local, { name, text, ts, mine: true, pending: true });
  rc.send(CHAT, "message", { name, text }).then(
    (ack) => {
      messages.delete(local);
      addMessage(`${ack.epoch}:${ack.offset}`, { name, text, ts, mine: true });
    },
    (e) => {
      // `closed`: the connection dropped before the ack, so delivery is unknown. If
      // the server stored it, recovery or history brings it back; otherwise the
      // text goes back into the box to send again.
      messages.delete(local);
      renderMessages();
      if (!$("text").value) $("text").value = text;
      console.warn("send failed:", e.code);
    },
  );
});

rc.on(CHAT, "message", (_data, frame) => {
  receive(frame);
  if (frame.from?.connectionId) here.add(frame.from.connectionId);
  renderRoster();
});

async function loadHistory() {
  const h = await rc.history(CHAT, { limit: 50 });
  for (const f of h.events) if (f.event === "message") receive(f);
}

// ---------------------------------------------------------------- presence
// The server counts the room's connections and tells members when one joins or
// leaves. Connections are anonymous here (no token, no user id), so a name is the
// one a connection last used in a chat message.
const names = new Map(); // connection id -> name
const here = new Set(); // connection ids seen joining or chatting, until they leave
let count = null; // connections in the room, from the server
const presenceLog = []; // the server's join and leave events, for the browser test

function renderRoster() {
  const others = [...here].map((id) => names.get(id) ?? "guest").sort();
  const rows = [`${name} (you)`, ...others];
  const silent = count === null ? 0 : count - 1 - here.size;
  if (silent > 0) rows.push(`+ ${silent} more`);
  $("roster").replaceChildren(
    ...rows.map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }),
  );
  $("presence-mode").textContent = `presence: ${count ?? "…"} connected`;
}

async function refreshPresence() {
  const p = await rc.presence(CHAT);
  count = p.count;
  renderRoster();
}

rc.onPresence(CHAT, (change) => {
  presenceLog.push({ change: change.change, connectionId: change.member.connectionId });
  if (change.change === "join") here.add(change.member.connectionId);
  else here.delete(change.member.connectionId);
  refreshPresence().catch((e) => console.warn("presence:", e.code));
});

const rejoins = []; // {recovered} per rejoin of the chat room, for the browser test
rc.onRejoin((room, { recovered }) => {
  if (room !== CHAT) return;
  rejoins.push({ recovered });
  // Changes posted while this page was away are lost: start the roster afresh.
  here.clear();
  if (!recovered) loadHistory().catch((e) => console.warn("history:", e.code));
  refreshPresence().catch((e) => console.warn("presence:", e.code));
});

// ---------------------------------------------------------------- dashboard
const tiles = new Map(); // key -> {el, values, firstSeq, lastSeq, received}
const arrivals = []; // receive times (ms), for events per second
const latencies = []; // publish -> screen (ms)
const fanouts = []; // server event time -> screen (ms)
const dash = { received: 0, conflated: 0 };

function median(xs) {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
const push = (xs, x, n) => {
  xs.push(x);
  if (xs.length > n) xs.shift();
};

function tile(key, label) {
  let t = tiles.get(key);
  if (t) return t;
  $("tiles").querySelector(".empty")?.remove();
  const el = document.createElement("div");
  el.className = "tile";
  el.dataset.key = key;
  el.innerHTML = '<div class="label"></div><div class="value"></div><svg viewBox="0 0 100 30" preserveAspectRatio="none"><polyline/></svg><div class="count"></div>';
  el.querySelector(".label").textContent = label;
  const all = [...tiles.keys(), key].sort();
  const before = tiles.get(all[all.indexOf(key) + 1])?.el ?? null;
  $("tiles").insertBefore(el, before);
  t = { el, values: [], firstSeq: null, lastSeq: null, received: 0 };
  tiles.set(key, t);
  return t;
}

function format(value, unit) {
  const v = Math.abs(value) >= 100 ? Math.round(value).toLocaleString() : value.toFixed(1);
  return unit ? `${v}<small>${unit}</small>` : v;
}

rc.on(DASH, "metric", (d, frame) => {
  if (!d || typeof d.key !== "string" || typeof d.value !== "number") return;
  const now = Date.now();
  const t = tile(d.key, String(d.label ?? d.key));
  if (t.firstSeq === null) t.firstSeq = d.seq;
  // Sequence numbers per key: a gap is updates the queue conflated away.
  if (t.lastSeq !== null && d.seq > t.lastSeq + 1) dash.conflated += d.seq - t.lastSeq - 1;
  t.lastSeq = Math.max(t.lastSeq ?? d.seq, d.seq);
  t.received += 1;
  dash.received += 1;
  push(t.values, d.value, 40);
  push(arrivals, now, 5000);
  if (typeof d.t === "number") push(latencies, now - d.t, 200);
  if (typeof frame?.ts === "number") push(fanouts, now - frame.ts, 200);
  t.el.querySelector(".value").innerHTML = format(d.value, d.unit);
  const lo = Math.min(...t.values);
  const hi = Math.max(...t.values);
  const points = t.values.map((v, i) => `${(i / Math.max(1, t.values.length - 1)) * 100},${28 - ((v - lo) / (hi - lo || 1)) * 26}`);
  t.el.querySelector("polyline").setAttribute("points", points.join(" "));
  t.el.querySelector(".count").textContent = `${t.received} shown of ${t.lastSeq - t.firstSeq + 1} published`;
});

setInterval(() => {
  const now = Date.now();
  while (arrivals.length && now - arrivals[0] > 5000) arrivals.shift();
  $("eps").textContent = (arrivals.length / 5).toFixed(1);
  $("received").textContent = dash.received.toLocaleString();
  $("conflated").textContent = dash.conflated.toLocaleString();
  const l = median(latencies);
  const f = median(fanouts);
  $("latency").textContent = l === null ? "–" : `${l} ms`;
  $("fanout").textContent = f === null ? "–" : `${f} ms`;
}, 500);

// ---------------------------------------------------------------- start
renderRoster();
await rc.join(CHAT);
await rc.join(DASH);
await Promise.all([loadHistory(), refreshPresence()]);

// For the browser test and for poking at from the console.
window.demo = { rc, name, messages, names, here, presenceLog, rejoins, dash };
