import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPlatform, signUp, type TestPlatform, type TestUser } from '../test-support/platform.js';

let t: TestPlatform;
beforeAll(async () => {
  t = await createTestPlatform();
});
afterAll(() => t?.close());

const URL = '/v1/me/notification-preferences';
const get = (u: TestUser) => t.app.inject({ method: 'GET', url: URL, headers: u.auth });
const patch = (u: TestUser, payload: unknown) => t.app.inject({ method: 'PATCH', url: URL, headers: u.auth, payload: payload as object });

describe('notification preferences', () => {
  it('a new user has email and push on and nothing muted', async () => {
    const res = await get(await signUp(t.app));
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ email: true, push: true, mutedEventTypes: [] });
  });

  it('PATCH changes only the fields it names', async () => {
    const u = await signUp(t.app);
    const first = await patch(u, { email: false });
    expect(first.statusCode).toBe(200);
    expect(first.json()).toEqual({ email: false, push: true, mutedEventTypes: [] });
    expect((await patch(u, { push: false })).json()).toEqual({ email: false, push: false, mutedEventTypes: [] });
    expect((await get(u)).json()).toEqual({ email: false, push: false, mutedEventTypes: [] });
  });

  it('PATCH replaces the muted event types, listed in a fixed order', async () => {
    const u = await signUp(t.app);
    const res = await patch(u, { mutedEventTypes: ['payment.captured', 'transfer.completed'] });
    expect(res.json()).toEqual({ email: true, push: true, mutedEventTypes: ['transfer.completed', 'payment.captured'] });
    expect((await patch(u, { mutedEventTypes: [] })).json().mutedEventTypes).toEqual([]);
  });

  it("a user's preferences are their own", async () => {
    const [a, b] = [await signUp(t.app), await signUp(t.app)];
    await patch(a, { email: false, mutedEventTypes: ['topup.completed'] });
    expect((await get(b)).json()).toEqual({ email: true, push: true, mutedEventTypes: [] });
  });

  it.each([
    ['an unknown event type', { mutedEventTypes: ['transfer.teleported'] }],
    ['a repeated event type', { mutedEventTypes: ['topup.completed', 'topup.completed'] }],
    ['an unknown field', { sms: true }],
    ['a non-boolean switch', { email: 'no' }],
    ['an empty body', {}],
  ])('rejects %s with 400 validation_failed', async (_what, body) => {
    const u = await signUp(t.app);
    const res = await patch(u, body);
    expect(res.statusCode).toBe(400);
    expect(res.json().code).toBe('validation_failed');
    expect((await get(u)).json()).toEqual({ email: true, push: true, mutedEventTypes: [] });
  });

  it('requires a token', async () => {
    expect((await t.app.inject({ method: 'GET', url: URL })).statusCode).toBe(401);
    expect((await t.app.inject({ method: 'PATCH', url: URL, payload: { email: false } })).statusCode).toBe(401);
  });

  it('is described in the OpenAPI document', async () => {
    const doc = (await t.app.inject({ method: 'GET', url: '/docs/json' })).json();
    expect(Object.keys(doc.paths[URL])).toEqual(expect.arrayContaining(['get', 'patch']));
  });
});
