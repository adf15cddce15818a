/** JWT access tokens: HS256 only (pinned), with iss, aud, exp and sub checked on every request. */
import { createSigner, createVerifier } from 'fast-jwt';
import type { Config } from '../config/index.js';
import { parseId } from '../shared/ids.js';

export interface Principal {
  userId: string;
  shard: number;
  /** operator role for admin endpoints (later issues) */
  roles: string[];
}

export interface Tokens {
  issue(userId: string, roles?: string[]): { accessToken: string; expiresIn: number };
  /** the principal, or undefined for any token that fails a check */
  verify(token: string): Principal | undefined;
}

export function createTokens(config: Config): Tokens {
  const sign = createSigner({ key: config.jwtSecret, algorithm: 'HS256', iss: config.jwtIssuer, aud: config.jwtAudience, expiresIn: config.jwtTtlSeconds * 1000 });
  const verify = createVerifier({
    key: config.jwtSecret,
    algorithms: ['HS256'],
    allowedIss: config.jwtIssuer,
    allowedAud: config.jwtAudience,
    requiredClaims: ['sub', 'iss', 'aud', 'exp'],
    cache: 10_000,
    cacheTTL: 60_000,
  });
  return {
    issue(userId, roles = []) {
      return { accessToken: sign({ sub: userId, roles }), expiresIn: config.jwtTtlSeconds };
    },
    verify(token) {
      try {
        const claims = verify(token) as { sub?: unknown; roles?: unknown };
        if (typeof claims.sub !== 'string') return undefined;
        const parsed = parseId(claims.sub, 'usr');
        if (!parsed) return undefined;
        const roles = Array.isArray(claims.roles) ? claims.roles.filter((r): r is string => typeof r === 'string') : [];
        return { userId: claims.sub, shard: parsed.shard, roles };
      } catch {
        return undefined;
      }
    },
  };
}
