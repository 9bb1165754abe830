// Screenshots of the demo for the docs: roomcast dev serves it, the publisher feeds the
// dashboard, and two Chromium pages chat: alice's at 1280 px wide (docs/demo-1280.png,
// the window) and bob's at 390 px, a phone (docs/demo-390.png, the whole page).
//
//   cd demo && npm ci && ROOMCAST_BIN=../target/debug/roomcast node screenshots.mjs
import { existsSync } from "node:fs";
import { join } from "node:path";
import { BIN, CHROMIUM, DEMO, ROOT, openPage, startDev, startPublisher } from "./harness.mjs";

for (const [what, path] of [["roomcast binary (ROOMCAST_BIN)", BIN], ["Chromium (CHROMIUM)", CHROMIUM], ["client bundle (npm run build)", join(DEMO, "vendor/roomcast-client.js")]]) {
  if (!existsSync(path)) {
    console.error(`screenshots.mjs: no ${what} at ${path}`);
    process.exit(1);
  }
}

const children = [];
const pages = [];
const until = async (what, check) => {
  for (const deadline = Date.now() + 30_000; !(await check()); ) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
};
const say = async (who, text) => {
  await who.page.fill("#text", text);
  await who.page.press("#text", "Enter");
  for (const other of pages) await other.page.locator("#messages li .text", { hasText: text }).first().waitFor();
};

try {
  const { addr } = await startDev(children);
  startPublisher(children, addr, 200);
  const alice = await openPage(addr, "alice", { width: 1280, height: 800 });
  pages.push(alice);
  const bob = await openPage(addr, "bob", { width: 390, height: 844 });
  pages.push(bob);
  await alice.page.locator("#roster li", { hasText: "bob" }).waitFor();
  await bob.page.locator("#roster li", { hasText: "alice" }).waitFor();
  await say(alice, "Morning! Is the deploy done?");
  await say(bob, "Yes, all green. Connections are climbing.");
  await say(alice, "I see it on the dashboard, thanks");
  // Long enough for every tile's sparkline to have a shape.
  for (const { page } of pages) {
    await until("eight tiles with history", () =>
      page.evaluate(() => document.querySelectorAll(".tile polyline[points*=' ']").length === 8 &&
        [...document.querySelectorAll(".tile polyline")].every((p) => p.getAttribute("points").split(" ").length >= 12)));
  }
  await alice.page.screenshot({ path: join(ROOT, "docs/demo-1280.png") });
  await bob.page.screenshot({ path: join(ROOT, "docs/demo-390.png"), fullPage: true });
  for (const p of pages) if (p.errors.length) throw new Error(`${p.name}'s page: ${p.errors.join("; ")}`);
  console.log("wrote docs/demo-1280.png and docs/demo-390.png");
} finally {
  for (const p of pages) await p.close().catch(() => {});
  for (const child of children.reverse()) child.kill("SIGTERM");
}
