/** Shared by the money services: the request's context for scoring and the fraud-alerts event. */
import type { FastifyRequest } from 'fastify';
import type { Op } from '../ledger/types.js';
import { newId } from '../shared/ids.js';
import type { FraudDecision } from './types.js';

export interface RequestContext {
  /** ISO 3166-1 alpha-2 of the client, from the edge (CDN or gateway header), when known */
  clientCountry?: string;
}

const COUNTRY = /^[A-Z]{2}$/;

/**
 * The client's country from the header the edge sets (FRAUD_CLIENT_COUNTRY_HEADER, e.g.
 * CloudFront-Viewer-Country or CF-IPCountry). Trust it only behind an edge that overwrites it.
 */
export function requestContext(req: FastifyRequest, header: string): RequestContext {
  const raw = req.headers[header];
  const v = typeof raw === 'string' ? raw.trim().toUpperCase() : undefined;
  return v && COUNTRY.test(v) ? { clientCountry: v } : {};
}

/** an event on fraud-alerts (through the outbox, in the transaction of the decision's effect) */
export function fraudAlert(userId: string, shard: number, at: Date, type: 'fraud.review' | 'fraud.declined' | 'fraud.review_approved' | 'fraud.review_declined', payload: Record<string, unknown> & { decision?: FraudDecision }): Op {
  const { decision, ...rest } = payload;
  const body = decision ? { ...rest, score: decision.score, reasons: decision.reasons, rulesVersion: decision.rulesVersion, modelVersion: decision.modelVersion, ...(decision.fallback ? { fallback: decision.fallback } : {}) } : rest;
  return { t: 'outbox', event: { eventId: newId('evt', shard, at), topic: 'fraud-alerts', partitionKey: userId, shard, type, payload: body } };
}
