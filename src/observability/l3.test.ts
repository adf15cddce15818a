/**
 * L3 for the API documentation: the OpenAPI document and swagger-ui's files carry a strong
 * ETag (a hash of the bytes; one per encoding when compressed) and Cache-Control, and a
 * matching If-None-Match is answered 304 with no body.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPlatform, type TestPlatform } from '../test-support/platform.js';
import { matchingTag } from '../http/l3.js';

const STATIC = join(dirname(createRequire(import.meta.url).resolve('@fastify/swagger-ui')), 'static');
const STRONG = /^"[A-Za-z0-9_-]{43}"$/;
const hashOf = (bytes: string | Buffer) => createHash('sha256').update(bytes).digest('base64url');

let t: TestPlatform;
beforeAll(async () => {
  t = await createTestPlatform();
});
afterAll(() => t?.close());

const get = (url: string, headers: Record<string, string> = {}) => t.app.inject({ method: 'GET', url, headers });

describe('the OpenAPI document', () => {
  it('carries a strong ETag (the hash of its bytes) and is public for 5 minutes', async () => {
    const res = await get('/docs/json');
    expect(res.statusCode).toBe(200);
    expect(res.headers.etag).toMatch(STRONG);
    expect(res.headers.etag).toBe(`"${hashOf(res.rawPayload)}"`);
    expect(res.headers['cache-control']).toBe('public, max-age=300');
    // the same document, the same tag
    expect((await get('/docs/json')).headers.etag).toBe(res.headers.etag);
  });

  it('answers 304 with no body to a matching If-None-Match, and 200 to another tag', async () => {
    const { headers } = await get('/docs/json');
    const again = await get('/docs/json', { 'if-none-match': headers.etag as string });
    expect(again.statusCode).toBe(304);
    expect(again.body).toBe('');
    expect(again.headers.etag).toBe(headers.etag);
    expect(again.headers['cache-control']).toBe('public, max-age=300');
    // weak comparison (RFC 9110): W/ and a list of tags match too
    expect((await get('/docs/json', { 'if-none-match': `"other", W/${headers.etag}` })).statusCode).toBe(304);
    const changed = await get('/docs/json', { 'if-none-match': '"not-this-one"' });
    expect(changed.statusCode).toBe(200);
    expect(changed.json().openapi).toBe('3.0.3');
  });

  it('tags each compressed representation apart, and revalidates any of them', async () => {
    const identity = (await get('/docs/json')).headers.etag as string;
    const br = await get('/docs/json', { 'accept-encoding': 'br' });
    expect(br.headers['content-encoding']).toBe('br');
    expect(br.headers.etag).toBe(`${identity.slice(0, -1)}.br"`);
    expect(br.headers.vary).toMatch(/accept-encoding/i);
    const revalidated = await get('/docs/json', { 'accept-encoding': 'br', 'if-none-match': br.headers.etag as string });
    expect(revalidated.statusCode).toBe(304);
    expect(revalidated.headers.etag).toBe(br.headers.etag);
    expect((await get('/docs/json', { 'accept-encoding': 'gzip', 'if-none-match': br.headers.etag as string })).statusCode).toBe(304);
  });

  it('does the same for the YAML document', async () => {
    const res = await get('/docs/yaml');
    expect(res.statusCode).toBe(200);
    expect(res.headers.etag).toBe(`"${hashOf(res.rawPayload)}"`);
    expect(res.headers['cache-control']).toBe('public, max-age=300');
    expect((await get('/docs/yaml', { 'if-none-match': res.headers.etag as string })).statusCode).toBe(304);
  });
});

describe("swagger-ui's static files", () => {
  it('carry the hash of the file as a strong ETag and are public for a day', async () => {
    const res = await get('/docs/static/swagger-ui.css');
    expect(res.statusCode).toBe(200);
    expect(res.headers.etag).toBe(`"${hashOf(readFileSync(join(STATIC, 'swagger-ui.css')))}"`);
    expect(res.headers['cache-control']).toBe('public, max-age=86400');
    expect(res.body).toBe(readFileSync(join(STATIC, 'swagger-ui.css'), 'utf8'));
  });

  it('answer 304 with no body to a matching If-None-Match, compressed or not', async () => {
    const plain = await get('/docs/static/swagger-ui-bundle.js');
    const again = await get('/docs/static/swagger-ui-bundle.js', { 'if-none-match': plain.headers.etag as string });
    expect(again.statusCode).toBe(304);
    expect(again.body).toBe('');
    expect(again.headers.etag).toBe(plain.headers.etag);
    expect(again.headers['cache-control']).toBe('public, max-age=86400');

    const gz = await get('/docs/static/swagger-ui-bundle.js', { 'accept-encoding': 'gzip' });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gz.headers.etag).toBe(`${(plain.headers.etag as string).slice(0, -1)}.gzip"`);
    expect((await get('/docs/static/swagger-ui-bundle.js', { 'accept-encoding': 'gzip', 'if-none-match': gz.headers.etag as string })).statusCode).toBe(304);
    expect((await get('/docs/static/swagger-ui-bundle.js', { 'if-none-match': '"stale"' })).statusCode).toBe(200);
  });

  it('leave unknown files a plain 404', async () => {
    const res = await get('/docs/static/no-such-file.js');
    expect(res.statusCode).toBe(404);
    expect(res.headers.etag).toBeUndefined();
  });

  it('tag the generated UI pages too', async () => {
    const init = await get('/docs/static/swagger-initializer.js');
    expect(init.statusCode).toBe(200);
    expect(init.headers.etag).toMatch(STRONG);
    expect(init.headers['cache-control']).toBe('public, max-age=300');
  });
});

describe('matchingTag', () => {
  const hash = 'a'.repeat(43);
  it("returns the client's tag that names a representation of these bytes", () => {
    expect(matchingTag(undefined, hash)).toBeUndefined();
    expect(matchingTag(`"${hash}"`, hash)).toBe(`"${hash}"`);
    expect(matchingTag(`"x", W/"${hash}.br"`, hash)).toBe(`"${hash}.br"`);
    expect(matchingTag('*', hash)).toBe(`"${hash}"`);
    expect(matchingTag(`"${'b'.repeat(43)}.br"`, hash)).toBeUndefined();
  });
});
