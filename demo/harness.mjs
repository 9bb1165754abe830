// What the browser test and screenshots.mjs share: `roomcast dev` serving the demo
// with its policies, the publisher, and headless Chromium pages of the demo.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const DEMO = fileURLToPath(new URL(".", import.meta.url));
export const ROOT = join(DEMO, "..");
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const BIN = process.env.ROOMCAST_BIN ?? join(ROOT, "target/debug/roomcast");

/**
 * Starts `roomcast dev --static demo/ --policies demo/policies.json` on `port` (0: a
 * free one); resolves with `{addr, dev}` once it listens, or rejects if it exits first.
 * `children` collects the process, to be stopped at the end.
 */
export function startDev(children, port = 0) {
  const dev = spawn(BIN, ["dev", "--port", String(port), "--static", DEMO, "--policies", join(DEMO, "policies.json")], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: "warn" },
  });
  children.push(dev);
  let err = "";
  dev.stderr.on("data", (d) => (err += d));
  return new Promise((resolve, reject) => {
    let out = "";
    dev.stdout.on("data", (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    dev.on("error", reject);
    dev.on("exit", (code) => reject(new Error(`roomcast dev exited (${code}): ${err}`)));
  }).then((addr) => ({ addr, dev }));
}

/** The publisher, feeding the dashboard through the queue of the server at `addr`. */
export function startPublisher(children, addr, rate = 300) {
  const publisher = spawn(process.execPath, [join(DEMO, "publisher.mjs"), "--endpoint", `http://${addr}`, "--rate", String(rate)], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  children.push(publisher);
  return publisher;
}

/**
 * A headless Chromium page of the demo at `addr` for `name`, `width` × `height`;
 * `setup(page)` runs before it loads. Page errors and console errors collect in
 * `errors`; `close()` ends the browser and removes its profile.
 */
export async function openPage(addr, name, { width = 1280, height = 760, setup } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "roomcast-demo-"));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width, height },
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
  const page = context.pages()[0] ?? (await context.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => m.type() === "error" && errors.push(`console: ${m.text()}`));
  if (setup) await setup(page);
  await page.goto(`http://${addr}/?name=${name}`);
  return {
    name,
    page,
    errors,
    async close() {
      await context.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
