// The playground is served by the facade binary under /playground/ from dist/, which is
// committed: CI rebuilds it and fails if it differs (`git diff --exit-code playground/dist`).
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/playground/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    // The GraphQL language service is one chunk of ~550 kB (170 kB gzip); the budget is the whole load.
    chunkSizeWarningLimit: 600,
    // Keep the editor libraries apart from our code, so a change to the app rewrites one chunk.
    rolldownOptions: {
      output: {
        codeSplitting: {
          groups: [
            { name: 'graphql', test: /node_modules[\\/](graphql|graphql-language-service|cm6-graphql|vscode-languageserver-types|nullthrows|debounce-promise)[\\/]/ },
            { name: 'editor', test: /node_modules[\\/](@codemirror|@lezer|codemirror|crelt|style-mod|w3c-keyname|@marijn)[\\/]/ },
            // The TypeScript checker: loaded when a transform is first checked, never at first load.
            { name: 'typescript', test: /node_modules[\\/]typescript[\\/]/ },
            { name: 'vendor', test: /node_modules[\\/]/ },
          ],
        },
      },
    },
  },
});
