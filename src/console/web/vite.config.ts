import { defineConfig } from 'vite';

// Built once at install (scripts/setup.sh runs `npm run build:console`) into dist/console,
// which Cove serves at /console/; nothing is fetched at run time.
export default defineConfig({
  root: import.meta.dirname,
  base: '/console/',
  logLevel: 'warn',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: `${import.meta.dirname}/../../../dist/console`,
    emptyOutDir: true,
    target: 'es2022',
    // One script and one stylesheet: the page is small, and CSP allows only 'self'.
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
});
