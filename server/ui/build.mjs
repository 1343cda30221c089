// Builds the web UI into ui/dist with esbuild: one minified ES module, its CSS and index.html.
// Plain JavaScript so that it runs at install time before anything is compiled.
// Each file is written beside its place and renamed into it: the browser tests build the UI from
// their own processes, two at once, while a server may be serving it; a rename is atomic, so nobody
// reads a half-written app.js.
import { build } from "esbuild";
import { copyFile, mkdir, mkdtemp, rename, rm, stat } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const out = `${here}dist/`;
await mkdir(out, { recursive: true });
const staging = `${await mkdtemp(`${out}.build-`)}/`;
try {
  await build({
    entryPoints: [`${here}src/main.tsx`],
    outfile: `${staging}app.js`,
    bundle: true,
    format: "esm",
    minify: true,
    target: "es2022",
    jsx: "automatic",
    jsxImportSource: "preact",
    legalComments: "none",
    logLevel: "warning",
  });
  await copyFile(`${here}index.html`, `${staging}index.html`);
  await copyFile(`${here}app.css`, `${staging}app.css`);
  for (const file of ["app.js", "index.html", "app.css"]) await rename(`${staging}${file}`, `${out}${file}`);
} finally {
  await rm(staging, { recursive: true, force: true });
}
const { size } = await stat(`${out}app.js`);
console.log(`dex web UI built: ui/dist/app.js ${(size / 1024).toFixed(1)} KiB`);
