// The package's build: tsc compiles src/ to ES modules with declarations in dist/;
// esbuild then writes the CommonJS build (dist/cjs/, with a copy of the declarations
// under a {"type": "commonjs"} package.json so TypeScript reads them as CommonJS) and
// the two files a page can load without a bundler: dist/roomcast.min.js (an ES module)
// and dist/roomcast.iife.js (a script that sets the global `roomcast`). It prints each
// browser file's minified and gzipped size and fails when one is over the budget.
//
//   node build.mjs
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

const BUDGET = 6 * 1024; // gzipped bytes per browser file
const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");

rmSync(dist, { recursive: true, force: true });
execFileSync(process.execPath, [tsc, "-p", join(here, "tsconfig.json")], { stdio: "inherit" });

const entry = join(dist, "index.js");
// esbuild notes that the exports map's "default" comes after "import" and "require":
// it is there for resolvers that set neither.
const common = { entryPoints: [entry], bundle: true, target: "es2022", logLevel: "warning", logOverride: { "package.json": "silent" } };

const cjs = join(dist, "cjs");
mkdirSync(cjs);
await build({ ...common, format: "cjs", platform: "neutral", outfile: join(cjs, "index.js") });
for (const f of readdirSync(dist)) if (f.endsWith(".d.ts")) copyFileSync(join(dist, f), join(cjs, f));
writeFileSync(join(cjs, "package.json"), JSON.stringify({ type: "commonjs" }) + "\n");

const browser = { ...common, platform: "browser", minify: true, legalComments: "none" };
const files = [
  ["roomcast.min.js", { format: "esm" }],
  ["roomcast.iife.js", { format: "iife", globalName: "roomcast" }],
];
let over = false;
for (const [name, opts] of files) {
  await build({ ...browser, ...opts, outfile: join(dist, name) });
  const bytes = readFileSync(join(dist, name));
  const gz = gzipSync(bytes, { level: 9 }).length;
  console.log(`dist/${name}: ${bytes.length} bytes minified, ${gz} bytes gzipped (budget ${BUDGET})`);
  over ||= gz > BUDGET;
}
if (over) {
  console.error("build.mjs: a browser file is over the gzipped size budget");
  process.exit(1);
}
