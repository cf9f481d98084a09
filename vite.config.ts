import { copyFileSync, mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import react from '@vitejs/plugin-react';
import { build, defineConfig, type Plugin } from 'vite';

/** COOP/COEP make the page cross-origin isolated, which onnxruntime-web needs for wasm threads. */
export const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

/**
 * onnxruntime-web's threaded wasm spawns workers that import its own .mjs glue; bundled into the
 * app they re-load the app and fail ("document is not defined"). Shipping the glue and the wasm as
 * static files (and pointing `env.wasm.wasmPaths` at them in production) avoids that.
 */
function ortStaticFiles(): Plugin {
  const files = ['ort-wasm-simd-threaded.jsep.mjs', 'ort-wasm-simd-threaded.jsep.wasm'];
  return {
    name: 'ringwork-ort-static',
    apply: 'build',
    writeBundle(options) {
      const out = resolve(options.dir ?? 'dist', 'ort');
      mkdirSync(out, { recursive: true });
      for (const f of files) copyFileSync(resolve('node_modules/onnxruntime-web/dist', f), resolve(out, f));
    },
  };
}

/**
 * The browser SDK (`/sdk/ringwork.js`): a library build of web/src/sdk/ringwork.ts into dist/sdk/,
 * an ES module that other sites import from the server, and its lazily loaded ring transport. It runs after the app's
 * build, so `vite build` (and `npm start`, which runs it) always ships both.
 */
function sdkLibrary(): Plugin {
  return {
    name: 'ringwork-sdk',
    apply: 'build',
    async closeBundle() {
      await build({
        configFile: false,
        root: resolve('.'),
        publicDir: false,
        logLevel: 'warn',
        build: {
          outDir: resolve('dist/sdk'),
          emptyOutDir: false,
          target: 'es2022',
          lib: { entry: resolve('web/src/sdk/ringwork.ts'), formats: ['es'], fileName: () => 'ringwork.js' },
          // The ring transport is a second module, loaded by ringwork.js on first use (HTTP-only pages
          // never fetch it); the server serves `/sdk/ringwork-*.js` next to it.
          rollupOptions: {
            output: {
              chunkFileNames: (c) =>
                c.name === 'ring-client' ? 'ringwork-ring-[hash].js' : 'ringwork-shared-[hash].js',
            },
          },
        },
      });
    },
  };
}

export default defineConfig({
  root: 'web',
  publicDir: resolve('public'),
  plugins: [react(), ortStaticFiles(), sdkLibrary()],
  server: { headers: ISOLATION_HEADERS },
  preview: { headers: ISOLATION_HEADERS },
  worker: { format: 'es' },
  build: {
    outDir: resolve('dist'),
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 2048,
    rollupOptions: {
      input: {
        main: resolve('web/index.html'),
        harness: resolve('web/harness.html'),
        profiler: resolve('web/profiler.html'),
        contracts: resolve('web/contracts.html'),
      },
    },
  },
  optimizeDeps: { exclude: ['onnxruntime-web'] },
});
