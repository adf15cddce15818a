#!/usr/bin/env node
// The `wallet` command: in production the compiled CLI (`npm run build`), otherwise the TypeScript
// sources through tsx (a dependency), so a fresh clone works right after `npm install`.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const compiled = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
if (process.env.NODE_ENV === 'production' && existsSync(compiled)) {
  await import(compiled);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(new URL('../src/cli/main.ts', import.meta.url).href);
}
