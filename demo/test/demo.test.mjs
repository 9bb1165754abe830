// The demo in headless Chromium against `roomcast dev --static demo/`: two pages chat
// and see each other; the dashboard receives batched, conflated updates from the
// publisher through the broadcast queue; every socket is dropped with DELETE
// @connections and the pages reconnect without losing a chat message; a reloaded
// page gets the earlier messages back. Screenshots go to target/demo-screenshots/.
//
//   cd demo && npm ci && ROOMCAST_BIN=../target/debug/roomcast node --test test/
//
// Chromium is Debian's /usr/bin/chromium (CHROMIUM overrides); without it the test
// prints "SKIPPED: chromium not found" and passes nothing.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import WebSocket from "ws";

const DEMO = fileURLToPath(new URL("..", import.meta.url));
const ROOT = join(DEMO, "..");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const BIN = process.env.ROOMCAST_BIN ?? join(ROOT, "target/debug/roomcast");
const SHOTS = join(ROOT, "target/demo-screenshots");
const WAIT = 30_000;

const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.log(`SKIPPED: chromium not found (${CHROMIUM})`);

const children = [];
const cleanups = [];

/** Starts `roomcast dev` with a policy file; resolves with its address, or null if it exits first. */
function startDev(policies) {
  const dev = spawn(BIN, ["dev", "--port", "0", "--static", DEMO, "--policies", join(DEMO, policies)], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: "warn" },
  });
  let err = "";
  dev.stderr.on("data", (d) => (err += d));
  return new Promise((resolve, reject) => {
    let out = "";
    dev.stdout.on("data", (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve({ dev, addr: m[1] });
    });
    dev.on("error", reject);
    dev.on("exit", (code) => resolve({ dev: null, code, err }));
  });
}

let addr;
let mode; // "server" (history and presence) or "fallback"
let browsers = [];

before(async () => {
  if (!hasChromium) return;
  assert.ok(existsSync(BIN), `no roomcast binary at ${BIN}: cargo build -p roomcast, or set ROOMCAST_BIN`);
  assert.ok(existsSync(join(DEMO, "vendor/roomcast-client.js")), "run npm ci (or npm run build) in demo/ first");
  mkdirSync(SHOTS, { recursive: true });
  // The policies with history and presence need a server that has them.
  let started = await startDev("policies-history.json");
  mode = "server";
  if (!started.dev) {
    console.log("history/presence policies refused by this roomcast; testing the page's fallback");
    started = await startDev("policies.json");
    mode = "fallback";
  }
  assert.ok(started.dev, `roomcast dev did not start: ${started.err}`);
  children.push(started.dev);
  addr = started.addr;
  const publisher = spawn(process.execPath, [join(DEMO, "publisher.mjs"), "--endpoint", `http://${addr}`, "--rate", "300"], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  children.push(publisher);
});

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  for (const child of children.reverse()) child.kill("SIGTERM");
});

async function browser(name) {
  const dir = mkdtempSync(join(tmpdir(), "roomcast-demo-"));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 760 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  cleanups.push(async () => {
    await context.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`http://${addr}/?name=${name}`);
  browsers.push({ name, page, errors });
  return { page, errors };
}

/** A bare WebSocket in the chat room, to learn the pages' connection ids from their events. */
async function observer() {
  const ws = new WebSocket(`ws://${addr}/local`);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  const ids = new Map(); // name -> latest connection id
  ws.on("message", (raw) => {
    const f = JSON.parse(String(raw));
    if (f.type === "event" && f.data?.name) ids.set(f.data.name, f.from.connectionId);
  });
  ws.send(JSON.stringify({ action: "join", room: "chat:lobby", id: 1 }));
  cleanups.push(async () => ws.close());
  return ids;
}

async function until(what, check) {
  const deadline = Date.now() + WAIT;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function say(page, text) {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

const shown = (page, text) =>
  page.locator("#messages li .text", { hasText: text }).first().waitFor({ timeout: WAIT });
const count = (page, text) => page.locator("#messages li .text", { hasText: text }).count();

test("the demo: chat, presence, the queue-fed dashboard, dropped sockets, reload", { skip: !hasChromium && "chromium not found" }, async () => {
  const ids = await observer();
  const alice = await browser("alice");
  const bob = await browser("bob");

  // Presence: each page lists the other.
  await alice.page.locator("#roster li", { hasText: "bob" }).waitFor({ timeout: WAIT });
  await bob.page.locator("#roster li", { hasText: "alice" }).waitFor({ timeout: WAIT });
  const presenceMode = await alice.page.textContent("#presence-mode");
  if (mode === "server") assert.match(presenceMode, /presence: server/);
  else {
    assert.match(presenceMode, /server has none/);
    assert.match(await alice.page.textContent("#history-note"), /history is off/i);
  }

  // Chat both ways.
  await say(alice.page, "hello from alice");
  await shown(bob.page, "hello from alice");
  await say(bob.page, "hi alice, bob here");
  await shown(alice.page, "hi alice, bob here");

  // The dashboard: every metric, updates batched and conflated by the queue.
  await until("all 8 metric tiles", async () => (await alice.page.locator(".tile").count()) === 8);
  const dash = await until("conflated updates", async () => {
    const d = await alice.page.evaluate(() => ({ ...window.demo.dash }));
    return d.received > 20 && d.conflated > 0 ? d : null;
  });
  assert.ok(dash.conflated > 0, "some updates of a key were replaced by later ones in the same batch");
  await alice.page.screenshot({ path: join(SHOTS, "1-chat-and-dashboard.png") });

  // Drop every page socket; a message sent at once still reaches the other page.
  await until("both connection ids", () => ids.has("alice") && ids.has("bob"));
  const oldIds = [ids.get("alice"), ids.get("bob")];
  for (const id of oldIds) {
    const res = await fetch(`http://${addr}/local/@connections/${encodeURIComponent(id)}`, { method: "DELETE" });
    assert.equal(res.status, 204, `DELETE @connections/${id}`);
  }
  await say(alice.page, "sent while the sockets were down");
  await say(bob.page, "bob was cut off too");
  await shown(bob.page, "sent while the sockets were down");
  await shown(alice.page, "bob was cut off too");
  for (const { page } of [alice, bob]) {
    await page.locator('#state[data-state="open"]').waitFor({ timeout: WAIT });
  }
  assert.ok(!oldIds.includes(ids.get("alice")), "alice is on a new connection");
  // No duplicates from resends and replays.
  assert.equal(await count(bob.page, "sent while the sockets were down"), 1);
  assert.equal(await count(alice.page, "hello from alice"), 1);
  const before = dash.received;
  await until("dashboard updates after the reconnect", async () =>
    (await alice.page.evaluate(() => window.demo.dash.received)) > before + 10);
  await alice.page.screenshot({ path: join(SHOTS, "2-after-reconnect.png"), clip: { x: 0, y: 0, width: 1280, height: 712 } });

  // A reload brings the earlier messages back (server history, or the other page's replay).
  await bob.page.reload();
  await shown(bob.page, "hello from alice");
  await shown(bob.page, "sent while the sockets were down");
  await bob.page.screenshot({ path: join(SHOTS, "3-bob-after-reload.png") });

  for (const b of browsers) assert.deepEqual(b.errors, [], `${b.name}: no page errors`);
});
