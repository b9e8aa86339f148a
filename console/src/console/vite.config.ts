/**
 * Builds the console into gateway/static/console/, which the gateway serves (gateway/console.py)
 * and the Python package ships. Asset URLs are absolute under /console/ because every page of
 * the console (/console/projects/…) is served the same index.html.
 */
import { fileURLToPath } from "node:url";

import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/console/",
  plugins: [react()],
  build: {
    outDir: fileURLToPath(new URL("../../../gateway/static/console", import.meta.url)),
    emptyOutDir: true,
  },
});
