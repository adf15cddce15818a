/**
 * Where a webhook may point. An endpoint is a URL the platform POSTs to from inside its
 * network, so a user-chosen URL is a server-side request forgery risk: in the strict policy
 * (production by default) only https to public addresses is allowed, checked when the endpoint
 * is registered (IP literals, localhost) and again at every connection (the resolved address,
 * so a DNS name that later points inside the network is refused too). The relaxed policy
 * (development and tests, or WEBHOOK_ALLOW_HTTP=true) allows http and private addresses.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import type { Config } from '../config/index.js';

export const URL_MAX_LENGTH = 2048;

export interface UrlPolicy {
  /** http:// and non-public addresses allowed */
  relaxed: boolean;
}

export function urlPolicy(config: Config): UrlPolicy {
  return { relaxed: config.webhookAllowHttp ?? config.nodeEnv !== 'production' };
}

// loopback, private, carrier-grade NAT, link-local (cloud metadata), documentation, benchmark,
// multicast and reserved ranges; IPv4-mapped IPv6 addresses are checked against the IPv4 rules
const NON_PUBLIC = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.0.0.0', 24],
  ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) NON_PUBLIC.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [['::', 128], ['::1', 128], ['64:ff9b::', 96], ['100::', 64], ['2001:db8::', 32], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8]] as const) {
  NON_PUBLIC.addSubnet(net, prefix, 'ipv6');
}

export function isPublicAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return !NON_PUBLIC.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

const bareHost = (hostname: string) => hostname.replace(/^\[|\]$/g, '');

/** why a URL may not be an endpoint (a detail for 400 validation_failed), or its normal form */
export function checkEndpointUrl(raw: string, policy: UrlPolicy): { ok: true; url: string } | { ok: false; detail: string } {
  if (raw.length > URL_MAX_LENGTH) return { ok: false, detail: `url: at most ${URL_MAX_LENGTH} characters` };
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return { ok: false, detail: 'url: not an absolute URL' };
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return { ok: false, detail: 'url: only http and https URLs can receive webhooks' };
  if (u.protocol === 'http:' && !policy.relaxed) return { ok: false, detail: 'url: must use https' };
  if (u.username || u.password) return { ok: false, detail: 'url: must not contain credentials; authenticate deliveries by their signature' };
  if (u.hash) return { ok: false, detail: 'url: must not contain a fragment' };
  if (!policy.relaxed) {
    const host = bareHost(u.hostname);
    if (host === 'localhost' || host.endsWith('.localhost') || (isIP(host) && !isPublicAddress(host))) return { ok: false, detail: 'url: must point to a public address' };
  }
  if (u.href.length > URL_MAX_LENGTH) return { ok: false, detail: `url: at most ${URL_MAX_LENGTH} characters` };
  return { ok: true, url: u.href };
}

/** the socket's lookup in the strict policy: refuses a name that resolves to any non-public address */
export const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
    if (err) return callback(err, '', 4);
    const refused = addresses.find((a) => !isPublicAddress(a.address));
    if (refused || !addresses.length) {
      const e = Object.assign(new Error(`${hostname} resolves to a non-public address`), { code: 'EWEBHOOKADDRESS' }) as NodeJS.ErrnoException;
      return callback(e, '', 4);
    }
    if (options.all) (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
    else callback(null, addresses[0]!.address, addresses[0]!.family);
  });
};

/** an IP-literal host is connected to without a lookup: checked here instead */
export function literalHostRefused(url: URL): boolean {
  const host = bareHost(url.hostname);
  return isIP(host) !== 0 && !isPublicAddress(host);
}
