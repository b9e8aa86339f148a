/**
 * Builds GraphiQL into gateway/static/graphiql/, which the gateway serves (gateway/graphiql.py)
 * and the Python package ships. Asset URLs are absolute under /graphiql/ because the page
 * itself is served at /graphql.
 */
import { fileURLToPath } from "node:url";

import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/graphiql/",
  plugins: [react()],
  build: {
    outDir: fileURLToPath(new URL("../../../gateway/static/graphiql", import.meta.url)),
    emptyOutDir: true,
    // Monaco (GraphiQL's editor) alone is a few MB; the page is a developer tool served from
    // the gateway, not a site on a slow network, so large chunks are expected.
    chunkSizeWarningLimit: 5000,
    rolldownOptions: {
      // GraphiQL's packages are compiled by the React Compiler, which leaves "use no memo"
      // directives at module level; dropping them from an already compiled bundle is harmless.
      checks: { moduleLevelDirective: false },
    },
  },
});
