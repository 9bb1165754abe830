// The packed package as a user installs it: `npm install` of `npm pack`'s tarball in a
// scratch project, then loaded every way the package offers: require() from
// CommonJS, import from an ES module, the minified ES module and the IIFE script
// (global `roomcast`) a page can load without a bundler, each connecting to a real
// `roomcast dev`; and TypeScript consumers with moduleResolution node16 (an .mts and
// a .cts file) and bundler, type-checking the declarations and the typed event maps.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { WebSocket } from "ws";
import { serverPerFile } from "./support.js";

const pkgDir = join(dirname(fileURLToPath(import.meta.url)), "..");
const fx = serverPerFile();
let project;
let packed;

before(() => {
  project = mkdtempSync(join(tmpdir(), "roomcast-consumer-"));
  const out = execFileSync("npm", ["pack", "--json", "--pack-destination", project], { cwd: pkgDir, encoding: "utf8" });
  packed = JSON.parse(out.slice(out.indexOf("[")))[0];
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true }));
  // As the README says: npm install of the tarball (it has no dependencies to fetch).
  const npmArgs = ["install", `./${packed.filename}`, "--offline", "--no-audit", "--no-fund", "--ignore-scripts"];
  execFileSync("npm", npmArgs, { cwd: project, encoding: "utf8" });
  // Node 20 has no global WebSocket: the consumer installs ws, as the README says.
  symlinkSync(join(pkgDir, "node_modules/ws"), join(project, "node_modules/ws"), "dir");
});

after(() => rmSync(project, { recursive: true, force: true }));

/** Runs a consumer script with node in the project; returns its stdout. */
const run = (file, text) => {
  writeFileSync(join(project, file), text);
  return execFileSync(process.execPath, [file, fx.server.url], { cwd: project, encoding: "utf8" });
};

// A join and a send's ack from a client the consumer made: the build really runs.
const roundTrip = `
  const rc = connect(url);
  const a = await rc.join("pkg:room");
  const s = await rc.send("pkg:room", "hi", 1);
  console.log(JSON.stringify([a.action, s.action, rc.state, typeof RoomcastError]));
  rc.close();`;
const expected = JSON.stringify(["join", "send", "open", "function"]) + "\n";

test("npm pack ships the builds, the types, README and LICENSE; README links work outside the repo", () => {
  const files = packed.files.map((f) => f.path).sort();
  for (const f of ["LICENSE", "README.md", "package.json", "dist/index.js", "dist/index.d.ts", "dist/cjs/index.js",
    "dist/cjs/index.d.ts", "dist/cjs/package.json", "dist/roomcast.min.js", "dist/roomcast.iife.js"]) {
    assert.ok(files.includes(f), `${f} in the tarball: ${files}`);
  }
  assert.ok(!files.some((f) => f.startsWith("src/") || f.startsWith("test/")), `no sources or tests: ${files}`);
  const readme = readFileSync(join(project, "node_modules/@roomcast/client/README.md"), "utf8");
  const links = [...readme.matchAll(/\]\(([^)]+)\)/g)].map((m) => m[1]);
  assert.ok(links.length > 0);
  for (const l of links) assert.match(l, /^(https:\/\/|#)/, `README link ${l} works outside the repository`);
  assert.match(readFileSync(join(project, "node_modules/@roomcast/client/LICENSE"), "utf8"), /Apache License/);
});

test("require() from CommonJS loads the CommonJS build", () => {
  const out = run("consumer.cjs", `
    const { connect, RoomcastError } = require("@roomcast/client");
    const path = require.resolve("@roomcast/client");
    if (!path.endsWith("dist/cjs/index.js")) throw new Error("resolved " + path);
    const url = process.argv[2];
    (async () => { ${roundTrip} })().catch((e) => { console.error(e); process.exit(1); });`);
  assert.equal(out, expected);
});

test("import from an ES module loads the ES build", () => {
  const out = run("consumer.mjs", `
    import { connect, RoomcastError } from "@roomcast/client";
    if (!import.meta.resolve("@roomcast/client").endsWith("dist/index.js")) throw new Error("wrong entry");
    const url = process.argv[2];
    ${roundTrip}`);
  assert.equal(out, expected);
});

test("the minified ES module and the IIFE script work on their own", async () => {
  const dist = join(project, "node_modules/@roomcast/client/dist");
  const min = await import(pathToFileURL(join(dist, "roomcast.min.js")).href);
  // The IIFE as a page's <script> runs it: it declares the global `roomcast`.
  const iife = new Function(`${readFileSync(join(dist, "roomcast.iife.js"), "utf8")}; return roomcast;`)();
  for (const lib of [min, iife]) {
    assert.equal(typeof lib.connect, "function");
    const rc = lib.connect(fx.server.url, { WebSocket });
    try {
      assert.equal((await rc.join("pkg:browser")).action, "join");
      assert.ok(new lib.RoomcastError("x", "y") instanceof Error);
    } finally {
      rc.close();
    }
  }
});

test("TypeScript consumers type-check with moduleResolution node16 and bundler", () => {
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  const typed = `
    type Chat = { message: { text: string }; typing: boolean };
    const rc = connect<Chat>("ws://127.0.0.1:1/local", { timeoutMs: 5000, debug: false });
    rc.on("chat:1", "message", (data) => data.text.toUpperCase());
    rc.once("chat:1", "typing", (on: boolean) => on);
    void rc.send("chat:1", "message", { text: "hi" }, { timeout: 1000, signal: new AbortController().signal });
    const fired: Promise<void> = rc.send("chat:1", "typing", true, { ack: false });
    // @ts-expect-error: the data of "message" is { text: string }
    void rc.send("chat:1", "message", 42);
    // @ts-expect-error: "nope" is not an event of the map
    rc.on("chat:1", "nope", () => {});
    const err: RoomcastError = new RoomcastError("timeout", "m", "chat:1", { cause: 1 });
    const state: State = rc.state;
    void [fired, err, state, rc.reconnect];
  `;
  const imports = `import { connect, RoomcastError, type State } from "@roomcast/client";`;
  const compile = (dir, options, files) => {
    mkdirSync(join(project, dir));
    for (const [name, text] of Object.entries(files)) writeFileSync(join(project, dir, name), text);
    const compilerOptions = { strict: true, noEmit: true, lib: ["ES2022", "DOM"], types: [], skipLibCheck: false, ...options };
    writeFileSync(join(project, dir, "tsconfig.json"), JSON.stringify({ compilerOptions, include: ["*"] }));
    try {
      execFileSync(process.execPath, [tsc, "-p", join(project, dir)], { cwd: project, encoding: "utf8" });
    } catch (e) {
      throw new Error(`tsc (${dir}) failed:\n${e.stdout}${e.stderr}`);
    }
  };
  compile("node16", { module: "node16", moduleResolution: "node16" }, {
    "esm.mts": imports + typed,
    "cjs.cts": imports + typed,
  });
  // module node16 implies target es2022; with bundler the target is the consumer's (the
  // declarations' private class fields need es2015 or later, as the README says).
  compile("bundler", { module: "esnext", moduleResolution: "bundler", target: "es2020" }, { "app.ts": imports + typed });
});
