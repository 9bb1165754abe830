// The demo page: a chat room (chat:lobby) and a live dashboard (dash:metrics) on one
// @roomcast/client connection. Plain DOM, no framework.
//
// Connections are anonymous (no token), so presence knows connections, not names: each
// page says its name with a fire-and-forget `hello` in who:lobby (a room without
// history) when it joins, and answers a newcomer's hello with its own, so every roster
// shows names before anyone chats. While the client is not open, the roster and the
// dashboard are marked stale.
//
// Chat leans on the server (demo/policies.json turns these on for `chat:`): earlier
// messages come from the room's history, "here now" from presence and its join and
// leave events, and after a dropped connection the client rejoins with `since` and
// the server replays what was missed. Messages are keyed by the room's epoch and
// offset, so a history reload after an unrecoverable gap shows each one once.
import { connect } from "./vendor/roomcast-client.js";

const CHAT = "chat:lobby";
const DASH = "dash:metrics";
const WHO = "who:lobby";
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
// What the roster and the dashboard say while the client is not open.
const STALE_NOTES = {
  connecting: "connecting…",
  reconnecting: "reconnecting: may be out of date",
  closed: "disconnected: may be out of date",
  unauthorized: "refused by the server: may be out of date",
};
rc.onState((s) => {
  $("state").dataset.state = s;
  $("state").textContent = s;
  const stale = s !== "open";
  for (const el of document.querySelectorAll("[data-stale]")) el.dataset.stale = String(stale);
  for (const el of document.querySelectorAll(".stale-note")) el.textContent = STALE_NOTES[s] ?? "";
  // Updates published while the page is away are lost, not conflated: the next gap of
  // each tile is counted as missed.
  if (stale) for (const t of tiles.values()) t.outage = true;
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
  if (sorted.length === 0) {
    const li = document.createElement("li");
    li.className = "placeholder";
    li.textContent = "No messages yet. Say hello!";
    return list.replaceChildren(li);
  }
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
  setEpoch(h.epoch);
  for (const f of h.events) if (f.event === "message") receive(f);
}

// A new epoch (the server restarted and its stored history is gone): messages of the
// old one go, rather than sit beside the new history.
let epoch = null;
function setEpoch(next) {
  if (typeof next !== "string" || next === epoch) return;
  epoch = next;
  for (const [key, m] of messages) if (!m.pending && !key.startsWith(`${next}:`)) messages.delete(key);
  renderMessages();
}

// ---------------------------------------------------------------- presence
// The server counts the room's connections and tells members when one joins or
// leaves; names come from hello events (and chat messages).
const names = new Map(); // connection id -> name
const here = new Set(); // connection ids seen joining, saying hello or chatting, until they leave

const hello = (reply) =>
  rc.send(WHO, "hello", { name, reply }, { ack: false }).catch((e) => console.warn("hello:", e.code));

rc.on(WHO, "hello", (d, frame) => {
  const id = frame.from?.connectionId;
  if (!id || typeof d?.name !== "string") return;
  names.set(id, d.name);
  here.add(id);
  if (!d.reply) hello(true);
  renderRoster();
});
let count = null; // connections in the room, from the server
const presenceLog = []; // the server's join and leave events, for the browser test

function renderRoster() {
  const others = [...here].map((id) => names.get(id) ?? "joining…").sort();
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
rc.onRejoin((room, { recovered, epoch: now }) => {
  // A new connection: the others learn its id and name from a new hello.
  if (room === WHO) return hello(false);
  if (room !== CHAT) return;
  rejoins.push({ recovered });
  // Changes posted while this page was away are lost: start the roster afresh.
  here.clear();
  setEpoch(now);
  if (!recovered) loadHistory().catch((e) => console.warn("history:", e.code));
  refreshPresence().catch((e) => console.warn("presence:", e.code));
});

// ---------------------------------------------------------------- dashboard
const tiles = new Map(); // key -> {el, values, firstSeq, lastSeq, received}
const arrivals = []; // receive times (ms), for events per second
const latencies = []; // publish -> screen (ms)
const fanouts = []; // server event time -> screen (ms)
const dash = { received: 0, conflated: 0, missed: 0 };

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
  t = { el, values: [], firstSeq: null, lastSeq: null, received: 0, outage: false };
  tiles.set(key, t);
  return t;
}

// One locale and, per metric, a fixed number of decimals (the publisher's `decimals`).
const number = (value, decimals = 0) =>
  value.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });

function format(value, unit, decimals) {
  const v = number(value, decimals);
  return unit ? `${v}<small>${unit}</small>` : v;
}

rc.on(DASH, "metric", (d, frame) => {
  if (!d || typeof d.key !== "string" || typeof d.value !== "number") return;
  const now = Date.now();
  const t = tile(d.key, String(d.label ?? d.key));
  if (t.firstSeq === null) t.firstSeq = d.seq;
  // Sequence numbers per key: a gap is updates the queue conflated away, or, across
  // an outage of this page, updates it missed.
  if (t.lastSeq !== null && d.seq > t.lastSeq + 1) dash[t.outage ? "missed" : "conflated"] += d.seq - t.lastSeq - 1;
  t.outage = false;
  t.lastSeq = Math.max(t.lastSeq ?? d.seq, d.seq);
  t.received += 1;
  dash.received += 1;
  push(t.values, d.value, 40);
  push(arrivals, now, 5000);
  if (typeof d.t === "number") push(latencies, now - d.t, 200);
  if (typeof frame?.ts === "number") push(fanouts, now - frame.ts, 200);
  t.el.querySelector(".value").innerHTML = format(d.value, d.unit, Number.isInteger(d.decimals) ? d.decimals : 0);
  const lo = Math.min(...t.values);
  const hi = Math.max(...t.values);
  const points = t.values.map((v, i) => `${(i / Math.max(1, t.values.length - 1)) * 100},${28 - ((v - lo) / (hi - lo || 1)) * 26}`);
  t.el.querySelector("polyline").setAttribute("points", points.join(" "));
  t.el.querySelector(".count").textContent = `${number(t.received)} shown of ${number(t.lastSeq - t.firstSeq + 1)} published`;
});

setInterval(() => {
  const now = Date.now();
  while (arrivals.length && now - arrivals[0] > 5000) arrivals.shift();
  $("eps").textContent = number(arrivals.length / 5);
  $("received").textContent = number(dash.received);
  $("conflated").textContent = number(dash.conflated);
  $("missed").textContent = number(dash.missed);
  const l = median(latencies);
  const f = median(fanouts);
  $("latency").textContent = l === null ? "–" : `${number(l)} ms`;
  $("fanout").textContent = f === null ? "–" : `${number(f)} ms`;
}, 500);

// ---------------------------------------------------------------- start
renderRoster();
renderMessages();
setEpoch((await rc.join(CHAT)).epoch);
await rc.join(DASH);
await rc.join(WHO);
hello(false);
await Promise.all([loadHistory(), refreshPresence()]);

// For the browser test and for poking at from the console.
window.demo = { rc, name, messages, names, here, presenceLog, rejoins, dash };
