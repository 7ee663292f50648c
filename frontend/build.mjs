// Bundles src/vapi-global.js into dist/ (git-ignored); bin/frontend runs it.
//   dist/vapi.js            the real SDK with the real Daily client (the /demo/ page)
//   dist/vapi-fake-daily.js the same SDK with src/fake-daily.js in place of Daily (browser tests)
import * as esbuild from "esbuild";

const common = {
  entryPoints: ["src/vapi-global.js"],
  bundle: true,
  format: "iife",
  platform: "browser",
  target: "es2020",
  logLevel: "warning",
  legalComments: "eof",
};

await Promise.all([
  esbuild.build({ ...common, outfile: "dist/vapi.js" }),
  esbuild.build({
    ...common,
    outfile: "dist/vapi-fake-daily.js",
    alias: { "@daily-co/daily-js": "./src/fake-daily.js" },
  }),
]);
