// The demo in headless Chromium against `roomcast dev --static demo/ --policies
// demo/policies.json`: two pages chat and see each other through the server's
// presence; the dashboard receives batched, conflated updates from the publisher
// through the broadcast queue; every page socket is dropped with DELETE
// @connections, and a message sent while one page cannot reconnect reaches it once,
// replayed by the server when it rejoins with `since`; a reloaded page gets the
// earlier messages from the room's history; a server restart (a new epoch) clears the
// old messages. What a person sees is checked: names in the roster before anyone
// chats, a stale marker during an outage, a placeholder in an empty chat, whole
// numbers where counts are shown, and no console errors. Screenshots (1280 and 390
// px wide) go to target/demo-screenshots/.
//
//   cd demo && npm ci && ROOMCAST_BIN=../target/debug/roomcast node --test test/
//
// Chromium is Debian's /usr/bin/chromium (CHROMIUM overrides); without it the test
// prints "SKIPPED: chromium not found" and passes nothing.
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { BIN, CHROMIUM, DEMO, ROOT, openPage, startDev, startPublisher } from "../harness.mjs";

const SHOTS = join(ROOT, "target/demo-screenshots");
const WAIT = 30_000;

const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.log(`SKIPPED: chromium not found (${CHROMIUM})`);

const children = [];

let addr;
let server;
const browsers = [];

before(async () => {
  if (!hasChromium) return;
  assert.ok(existsSync(BIN), `no roomcast binary at ${BIN}: cargo build -p roomcast, or set ROOMCAST_BIN`);
  assert.ok(existsSync(join(DEMO, "vendor/roomcast-client.js")), "run npm ci (or npm run build) in demo/ first");
  mkdirSync(SHOTS, { recursive: true });
  ({ addr, dev: server } = await startDev(children));
  startPublisher(children, addr);
});

after(async () => {
  for (const b of browsers.reverse()) await b.close().catch(() => {});
  for (const child of children.reverse()) child.kill("SIGTERM");
});

/** A Chromium page of the demo; `setup(page)` runs before it loads. */
async function browser(name, setup) {
  const b = await openPage(addr, name, { setup });
  browsers.push(b);
  return b;
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

const stateIs = (page, state) => page.locator(`#state[data-state="${state}"]`).waitFor({ timeout: WAIT });
const presenceSays = (page, text) => page.locator("#presence-mode", { hasText: text }).waitFor({ timeout: WAIT });
const rosterHas = (page, text) => page.locator("#roster li", { hasText: text }).first().waitFor({ timeout: WAIT });
// The roster's and the dashboard's notes: shown while reconnecting, saying so; hidden when open.
const staleShown = (page, visible) =>
  Promise.all(
    ["aside .stale-note", ".dash > .stale-note"].map((sel) =>
      visible
        ? page.locator(sel, { hasText: "reconnecting: may be out of date" }).waitFor({ state: "visible", timeout: WAIT })
        : page.locator(sel).waitFor({ state: "hidden", timeout: WAIT }),
    ),
  );
const demo = (page, fn, arg) => page.evaluate(fn, arg);

/** Alice says one thing and bob answers; each sees the other's line and lists the other by name. */
async function exchange(alice, bob, aliceSays, bobSays) {
  await say(alice.page, aliceSays);
  await shown(bob.page, aliceSays);
  await say(bob.page, bobSays);
  await shown(alice.page, bobSays);
  await rosterHas(alice.page, "bob");
  await rosterHas(bob.page, "alice");
}

test("the demo: chat, presence, the queue-fed dashboard, dropped sockets and recovery, reload", { skip: !hasChromium && "chromium not found" }, async () => {
  // Alice's page reaches the server through a route the test controls: while
  // `aliceCut` is set, each of her reconnect attempts is closed at once, so she
  // stays away while the room moves on.
  let aliceCut = false;
  const alice = await browser("alice", (page) =>
    page.routeWebSocket(/\/local$/, (ws) => {
      if (aliceCut) ws.close({ code: 1001, reason: "cut off" });
      else ws.connectToServer();
    }),
  );
  await presenceSays(alice.page, "1 connected");
  await staleShown(alice.page, false);
  await alice.page.locator("#messages li.placeholder", { hasText: "No messages yet" }).waitFor({ timeout: WAIT });
  const bob = await browser("bob");

  // Presence from the server: the count, and alice hears of bob's connection joining.
  await presenceSays(alice.page, "2 connected");
  await presenceSays(bob.page, "2 connected");
  await until("alice's presence join event", () => demo(alice.page, () => window.demo.presenceLog.some((p) => p.change === "join")));
  // Names before anyone speaks: each page said hello with its name.
  await rosterHas(alice.page, "bob");
  await rosterHas(bob.page, "alice");
  for (const page of [alice.page, bob.page]) {
    const roster = await page.locator("#roster li").allTextContents();
    assert.equal(roster.length, 2, `two members, both named: ${roster}`);
  }

  // Chat both ways; then each roster names the other.
  await exchange(alice, bob, "hello from alice", "hi alice, bob here");

  // The dashboard: every metric, updates batched and conflated by the queue.
  await until("all 8 metric tiles", async () => (await alice.page.locator(".tile").count()) === 8);
  const dash = await until("conflated updates", async () => {
    const d = await demo(alice.page, () => ({ ...window.demo.dash }));
    return d.received > 20 && d.conflated > 0 ? d : null;
  });
  assert.ok(dash.conflated > 0, "some updates of a key were replaced by later ones in the same batch");
  // Whole numbers where things are counted; each metric with its own fixed decimals.
  for (const id of ["eps", "received", "conflated", "missed"]) {
    assert.match(await alice.page.textContent(`#${id}`), /^\d{1,3}(,\d{3})*$/, `#${id}`);
  }
  for (const text of await alice.page.locator(".tile .count").allTextContents()) {
    assert.match(text, /^[\d,]+ shown of [\d,]+ published$/);
  }
  const errorRate = await alice.page.textContent('.tile[data-key="api.errors"] .value');
  assert.match(errorRate, /^\d+\.\d\d%$/, "the error rate with two decimals");
  assert.match(await alice.page.textContent('.tile[data-key="queue.depth"] .value'), /^[\d,]+$/, "a count, whole");
  await alice.page.screenshot({ path: join(SHOTS, "1-chat-and-dashboard.png") });

  // The server drops both pages' sockets. Bob reconnects; alice cannot yet.
  const idOf = (page, who) =>
    demo(page, (who) => [...window.demo.here].find((id) => window.demo.names.get(id) === who), who);
  const aliceId = await idOf(bob.page, "alice");
  const bobId = await idOf(alice.page, "bob");
  assert.ok(aliceId && bobId, "each page knows the other's connection from its messages");
  aliceCut = true;
  for (const id of [aliceId, bobId]) {
    const res = await fetch(`http://${addr}/local/@connections/${encodeURIComponent(id)}`, { method: "DELETE" });
    assert.equal(res.status, 204, `DELETE @connections/${id}`);
  }
  await stateIs(alice.page, "reconnecting");
  // The roster and the dashboard say they may be out of date while alice is away.
  await staleShown(alice.page, true);
  const bobRejoin = await until("bob's rejoin", () => demo(bob.page, () => window.demo.rejoins[0]));
  assert.equal(bobRejoin.recovered, true, "bob rejoined with since and missed nothing");
  await stateIs(bob.page, "open");

  // Bob speaks while alice is away: the server stores it (acked, no longer pending).
  await say(bob.page, "sent while alice was away");
  await bob.page.locator("#messages li:not(.pending) .text", { hasText: "sent while alice was away" }).waitFor({ timeout: WAIT });
  assert.equal(await alice.page.getAttribute("#state", "data-state"), "reconnecting", "alice is still away");
  assert.equal(await count(alice.page, "sent while alice was away"), 0);

  // Alice comes back: she rejoins with `since` and the server replays the message, once.
  aliceCut = false;
  await shown(alice.page, "sent while alice was away");
  await stateIs(alice.page, "open");
  await staleShown(alice.page, false);
  const aliceRejoins = await demo(alice.page, () => window.demo.rejoins);
  assert.deepEqual(aliceRejoins, [{ recovered: true }], "alice's rejoin recovered the missed events");
  assert.equal(await count(alice.page, "sent while alice was away"), 1);
  assert.equal(await count(alice.page, "hello from alice"), 1);
  assert.equal(await count(alice.page, "hi alice, bob here"), 1);
  assert.equal(await count(bob.page, "hello from alice"), 1);
  const before = dash.received;
  await until("dashboard updates after the reconnect", async () =>
    (await demo(alice.page, () => window.demo.dash.received)) > before + 10);
  // The gaps that span the outage are counted as missed, not as conflated away.
  await until("updates missed during the outage", () => demo(alice.page, () => window.demo.dash.missed > 0));

  await alice.page.screenshot({ path: join(SHOTS, "2-after-reconnect.png") });

  // A reload brings the earlier messages back from the room's history, each once;
  // alice hears bob's old connection leave and the new one join.
  const alicePresence = await demo(alice.page, () => window.demo.presenceLog.length);
  await bob.page.reload();
  await shown(bob.page, "hello from alice");
  await shown(bob.page, "sent while alice was away");
  for (const text of ["hello from alice", "hi alice, bob here", "sent while alice was away"]) {
    assert.equal(await count(bob.page, text), 1, `"${text}" once after the reload`);
  }
  const changes = await until("alice hears bob leave and rejoin", async () => {
    const log = await demo(alice.page, (n) => window.demo.presenceLog.slice(n).map((p) => p.change), alicePresence);
    return log.includes("leave") && log.includes("join") ? log : null;
  });
  assert.ok(changes.includes("leave"));
  await presenceSays(alice.page, "2 connected");
  await presenceSays(bob.page, "2 connected");
  await bob.page.screenshot({ path: join(SHOTS, "3-bob-after-reload.png") });

  await exchange(alice, bob, "welcome back, bob", "thanks, the history had it all");
  await alice.page.screenshot({ path: join(SHOTS, "4-alice-1280.png") });
  await bob.page.setViewportSize({ width: 390, height: 844 });
  await bob.page.screenshot({ path: join(SHOTS, "5-bob-390.png"), fullPage: true });
  await bob.page.setViewportSize({ width: 1280, height: 760 });
  for (const b of browsers) assert.deepEqual(b.errors, [], `${b.name}: no page errors or console errors`);

  // The server restarts on the same address with an empty store, so a new epoch: the
  // pages reconnect, and the old epoch's messages go instead of staying beside the new
  // (empty) history.
  const port = addr.split(":").pop();
  const exited = new Promise((r) => server.once("exit", r));
  server.kill("SIGTERM");
  await exited;
  ({ dev: server } = await startDev(children, port));
  for (const { page } of browsers) {
    await until("the old messages cleared", async () => (await count(page, "welcome back, bob")) === 0);
    await page.locator("#messages li.placeholder").waitFor({ timeout: WAIT });
    await stateIs(page, "open");
  }
  await exchange(alice, bob, "a new epoch", "and a clean slate");
  // While the server was down Chromium itself logs the refused WebSocket attempts.
  for (const b of browsers) {
    const other = b.errors.filter((e) => !/^console: WebSocket connection to .* failed/.test(e));
    assert.deepEqual(other, [], `${b.name}: no errors but the refused connections of the restart`);
  }
});
