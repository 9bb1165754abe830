// The demo page: a chat room (chat:lobby) and a live dashboard (dash:metrics) on one
// @roomcast/client connection. Plain DOM, no framework.
//
// Chat uses the server's history and presence where the namespace policy enables
// them. Where the server has neither, the page says so and falls back to what
// pages can do among themselves: names announced with `hello`/`here`/`bye`
// events, and, after a reconnect that could not recover, a `sync` request that
// makes the other pages resend their recent messages (duplicates are dropped by
// message id), so a chat message sent while sockets were dropped still arrives.
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
  if (s === "open") resendUnsent();
});
rc.onError((e) => console.warn("roomcast:", e.code, e.message));

// ---------------------------------------------------------------- chat
const messages = new Map(); // mid -> {mid, name, text, ts, mine, pending}
const sentLog = []; // my last messages, resent when a peer asks (no server history)
const unsent = new Set(); // mids whose send was cut off by a dropped connection
let serverHistory = false;
let serverPresence = false;

function newId() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`;
}

function addMessage(m) {
  const known = messages.get(m.mid);
  if (known && !known.pending) return;
  messages.set(m.mid, { ...known, ...m });
  renderMessages();
}

function renderMessages() {
  const list = $("messages");
  const sorted = [...messages.values()].sort((a, b) => a.ts - b.ts);
  list.replaceChildren(
    ...sorted.map((m) => {
      const li = document.createElement("li");
      li.className = `${m.mine ? "mine" : ""} ${m.pending ? "pending" : ""}`;
      li.dataset.mid = m.mid;
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

function sendMessage(m) {
  rc.send(CHAT, "message", { mid: m.mid, name: m.name, text: m.text, ts: m.ts }).then(
    () => {
      unsent.delete(m.mid);
      addMessage({ ...m, pending: false });
    },
    (e) => {
      // `closed`: the connection dropped before the ack; delivery is unknown, so
      // send again on the next connection (receivers drop the copy by mid).
      if (e.code === "closed") unsent.add(m.mid);
      else console.warn("send failed:", e.code);
    },
  );
}

function resendUnsent() {
  for (const mid of [...unsent]) {
    unsent.delete(mid);
    const m = messages.get(mid);
    if (m) sendMessage(m);
  }
}

$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("text").value = "";
  const m = { mid: newId(), name, text, ts: Date.now(), mine: true, pending: true };
  sentLog.push(m);
  if (sentLog.length > 50) sentLog.shift();
  addMessage(m);
  sendMessage(m);
});

rc.on(CHAT, "message", (data) => {
  if (data && typeof data.mid === "string" && typeof data.text === "string") {
    addMessage({ mid: data.mid, name: String(data.name ?? "?"), text: data.text, ts: Number(data.ts) || Date.now(), mine: data.name === name });
  }
});

// Who is here: names by announcement (anonymous connections have no user id).
const roster = new Map(); // name -> last heard (ms)
let serverCount = null;
function renderRoster() {
  const now = Date.now();
  for (const [who, seen] of roster) if (now - seen > 75_000) roster.delete(who);
  roster.set(name, now);
  $("roster").replaceChildren(
    ...[...roster.keys()].sort().map((who) => {
      const li = document.createElement("li");
      li.textContent = who === name ? `${who} (you)` : who;
      return li;
    }),
  );
  $("presence-mode").textContent = serverPresence
    ? `presence: server · ${serverCount ?? "?"} connected`
    : "presence: page-to-page (server has none)";
}
const announce = (event) => rc.send(CHAT, event, { name }).catch(() => {});
rc.on(CHAT, "hello", (d) => {
  roster.set(String(d?.name), Date.now());
  renderRoster();
  announce("here");
});
rc.on(CHAT, "here", (d) => {
  roster.set(String(d?.name), Date.now());
  renderRoster();
});
rc.on(CHAT, "bye", (d) => {
  roster.delete(String(d?.name));
  renderRoster();
});
rc.on(CHAT, "sync", () => {
  if (serverHistory) return;
  for (const m of sentLog.slice(-20)) {
    rc.send(CHAT, "message", { mid: m.mid, name: m.name, text: m.text, ts: m.ts }).catch(() => {});
  }
});
rc.onPresence(CHAT, () => refreshPresence());
setInterval(() => {
  announce("here");
  renderRoster();
}, 30_000);
addEventListener("pagehide", () => announce("bye"));

async function refreshPresence() {
  try {
    const p = await rc.presence(CHAT);
    serverPresence = true;
    serverCount = p.count;
  } catch (e) {
    serverPresence = false;
    console.info("no server presence:", e.code);
  }
  renderRoster();
}

async function loadHistory() {
  const note = $("history-note");
  try {
    const h = await rc.history(CHAT, { limit: 50 });
    serverHistory = true;
    note.hidden = true;
    for (const f of h.events) {
      const d = f.data;
      if (f.event === "message" && d && typeof d.mid === "string") {
        addMessage({ mid: d.mid, name: String(d.name), text: String(d.text), ts: Number(d.ts) || f.ts, mine: d.name === name });
      }
    }
  } catch (e) {
    serverHistory = false;
    note.hidden = false;
    note.textContent =
      `Server history is off here (${e.code}): earlier messages come only from pages still open, ` +
      "and nothing is kept once everyone leaves.";
    rc.send(CHAT, "sync", {}).catch(() => {});
  }
}

rc.onRejoin((room, { recovered }) => {
  if (room !== CHAT) return;
  announce("hello");
  if (!recovered) {
    if (serverHistory) loadHistory();
    else rc.send(CHAT, "sync", {}).catch(() => {});
  }
  refreshPresence();
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
announce("hello");
await Promise.all([loadHistory(), refreshPresence()]);

// For the browser test and for poking at from the console.
window.demo = { rc, name, messages, roster, dash, get serverHistory() { return serverHistory; }, get serverPresence() { return serverPresence; } };
