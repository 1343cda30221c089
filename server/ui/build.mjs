// Builds the web UI into ui/dist with esbuild: one minified ES module, its CSS and index.html.
// Plain JavaScript so that it runs at install time before anything is compiled.
import { build } from "esbuild";
import { copyFile, mkdir, stat } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const out = `${here}dist/`;
await mkdir(out, { recursive: true });
await build({
  entryPoints: [`${here}src/main.tsx`],
  outfile: `${out}app.js`,
  bundle: true,
  format: "esm",
  minify: true,
  target: "es2022",
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "none",
  logLevel: "warning",
});
await copyFile(`${here}index.html`, `${out}index.html`);
await copyFile(`${here}app.css`, `${out}app.css`);
const { size } = await stat(`${out}app.js`);
console.log(`dex web UI built: ui/dist/app.js ${(size / 1024).toFixed(1)} KiB`);
