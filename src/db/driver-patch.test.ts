/**
 * postgres.js 3.4.9 throws from a setImmediate when a connection closes under a buffered write
 * (porsager/postgres#1154, #1208): an uncatchable TypeError that takes the whole process down,
 * which a failover makes likely (the kill-a-primary bank test hit it). patches/ carries the
 * guard and `npm install` applies it (postinstall: patch-package); this fails if it did not.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// the package's exports hide its files from resolve(): the installed directory itself
const root = fileURLToPath(new URL('../../node_modules/postgres/', import.meta.url));

describe('the PostgreSQL driver', () => {
  it.each(['src/connection.js', 'cjs/src/connection.js'])('%s settles a write to a closed connection instead of crashing', (file) => {
    const source = readFileSync(join(root, file), 'utf8');
    const nextWrite = source.slice(source.indexOf('function nextWrite('), source.indexOf('socket.write(chunk, fn)'));
    expect(nextWrite).toMatch(/if \(socket === null\) \{[^}]*error\(Errors\.connection\('CONNECTION_CLOSED'/);
  });

  it('is the version the patch was made for', () => {
    const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
    expect(version).toBe('3.4.9');
  });
});
