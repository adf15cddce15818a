/**
 * L3, HTTP caching: entity tags that are hashes of the bytes sent, conditional GETs answered
 * 304, and Cache-Control that lets browsers and CDNs keep what does not change. Receipts
 * (src/receipts/routes.ts) and the API documentation (below) use it.
 */
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest, onSendHookHandler } from 'fastify';

/** The opaque part of an entity tag: a hash of the body (sha256, base64url, 43 characters). */
export function contentTag(body: string | Buffer): string {
  return createHash('sha256').update(body).digest('base64url');
}

/** If-None-Match uses the weak comparison (RFC 9110 13.1.2): W/ prefixes are ignored. */
export function etagMatches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false;
  const opaque = (tag: string) => tag.trim().replace(/^W\//, '');
  return ifNoneMatch.split(',').some((tag) => tag.trim() === '*' || opaque(tag) === opaque(etag));
}

/**
 * Strong tags and compression: @fastify/compress changes the bytes after the tag is set, and a
 * strong tag promises byte-identical bodies (a cache may combine ranges of them). So a
 * compressed body gets the tag of the identity body with the encoding appended ("<hash>.br",
 * "<hash>.gzip"; '.' is not in the base64url alphabet), one tag per representation. A
 * conditional request matches when the tag it names is any representation of the same bytes;
 * the 304 then repeats the client's own tag, the one its stored copy carries, so a cache
 * freshens exactly that copy (RFC 9111 4.3.4).
 * Returns the client's matching tag, or undefined.
 */
export function matchingTag(ifNoneMatch: string | undefined, hash: string): string | undefined {
  if (!ifNoneMatch) return undefined;
  for (const raw of ifNoneMatch.split(',')) {
    const tag = raw.trim();
    if (tag === '*') return `"${hash}"`;
    const identity = tag.replace(/\.[a-z0-9-]+"$/, '"');
    if (etagMatches(identity, `"${hash}"`)) return tag.replace(/^W\//, '');
  }
  return undefined;
}

export interface DocsCachingOptions {
  /** the folder @fastify/swagger-ui serves under <prefix>/static/ */
  staticRoot: string;
  /** the OpenAPI document and the pages generated from the configuration */
  documentMaxAgeSeconds: number;
  /** swagger-ui's files: their URLs carry no version, so a day, then a cheap revalidation */
  assetMaxAgeSeconds: number;
}

/**
 * Cache headers for everything @fastify/swagger-ui serves; call it in an encapsulated plugin
 * that then registers swagger-ui, so the hooks apply to those routes only. The document and
 * the generated pages are tagged by a hash of the payload at onSend (before compression). The
 * static files are tagged by a hash of their content, computed once per file (the folder's
 * files, listed at start, are the only ones hashed: bounded); a matching If-None-Match is
 * answered at onRequest, before @fastify/static opens the file. Its own weak mtime-based tag
 * and `max-age=0` are replaced.
 */
export function docsHttpCaching(app: FastifyInstance, opts: DocsCachingOptions): void {
  const files = new Set(readdirSync(opts.staticRoot, { withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name));
  const fileHashes = new Map<string, Promise<string>>();
  const documentCacheControl = `public, max-age=${opts.documentMaxAgeSeconds}`;
  const assetCacheControl = `public, max-age=${opts.assetMaxAgeSeconds}`;

  /** the static file a request names, if it is one of the folder's */
  const assetOf = (req: FastifyRequest): string | undefined => {
    if (!req.routeOptions.url?.endsWith('/static/*')) return undefined;
    const name = (req.params as Record<string, string | undefined>)['*'];
    return name !== undefined && files.has(name) ? name : undefined;
  };
  const hashOfFile = (name: string): Promise<string> => {
    let hash = fileHashes.get(name);
    if (!hash) {
      hash = readFile(join(opts.staticRoot, name)).then(contentTag);
      hash.catch(() => fileHashes.delete(name));
      fileHashes.set(name, hash);
    }
    return hash;
  };
  const notModified = (reply: FastifyReply, tag: string, cacheControl: string) => reply.code(304).headers({ etag: tag, 'cache-control': cacheControl });

  app.addHook('onRequest', async (req, reply) => {
    const asset = assetOf(req);
    if (!asset || (req.method !== 'GET' && req.method !== 'HEAD')) return;
    const matched = matchingTag(req.headers['if-none-match'], await hashOfFile(asset));
    if (matched) return notModified(reply, matched, assetCacheControl).send();
  });

  app.addHook('onSend', async (req, reply, payload) => {
    const status = reply.statusCode;
    if (status !== 200 && status !== 206) return payload;
    const asset = assetOf(req);
    if (asset) {
      reply.headers({ etag: `"${await hashOfFile(asset)}"`, 'cache-control': assetCacheControl });
      return payload;
    }
    if (typeof payload !== 'string' && !Buffer.isBuffer(payload)) return payload;
    const hash = contentTag(payload);
    const matched = matchingTag(req.headers['if-none-match'], hash);
    if (matched) {
      notModified(reply, matched, documentCacheControl);
      return null;
    }
    reply.headers({ etag: `"${hash}"`, 'cache-control': documentCacheControl });
    return payload;
  });

  // after @fastify/compress's own route hook (onRoute hooks of the parent run first): a
  // compressed body gets its representation's tag
  const tagTheEncoding: onSendHookHandler = async (_req, reply, payload) => {
    const encoding = reply.getHeader('content-encoding');
    const etag = reply.getHeader('etag');
    if (typeof encoding === 'string' && encoding !== 'identity' && typeof etag === 'string' && /^"[A-Za-z0-9_-]+"$/.test(etag)) {
      reply.header('etag', `${etag.slice(0, -1)}.${encoding}"`);
    }
    return payload;
  };
  app.addHook('onRoute', (route) => {
    route.onSend = [...(route.onSend === undefined ? [] : Array.isArray(route.onSend) ? route.onSend : [route.onSend]), tagTheEncoding];
  });
}
