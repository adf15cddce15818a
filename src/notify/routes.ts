import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Platform } from '../platform.js';
import { Bearer, problems } from '../http/schemas.js';
import { createPreferenceService } from './preferences.js';
import { NOTIFIABLE_EVENT_TYPES, type NotifiableEventType } from './templates.js';

const EventType = Type.Unsafe<NotifiableEventType>({ type: 'string', enum: [...NOTIFIABLE_EVENT_TYPES], description: 'a money event type' });

export const NotificationPreferencesSchema = Type.Object(
  {
    email: Type.Boolean({ description: 'email notifications on' }),
    push: Type.Boolean({ description: 'push notifications on' }),
    mutedEventTypes: Type.Array(EventType, { description: 'event types that notify through no channel' }),
  },
);

const PatchPreferences = Type.Object(
  {
    email: Type.Optional(Type.Boolean()),
    push: Type.Optional(Type.Boolean()),
    mutedEventTypes: Type.Optional(Type.Array(EventType, { uniqueItems: true, maxItems: NOTIFIABLE_EVENT_TYPES.length, description: 'replaces the list; [] unmutes everything' })),
  },
  { additionalProperties: false, minProperties: 1 },
);

export function notificationRoutes(p: Platform): FastifyPluginAsyncTypebox {
  const preferences = createPreferenceService(p);
  return async (app) => {
    app.addHook('onRequest', app.authenticate);
    const tags = ['notifications'];
    app.get(
      '/me/notification-preferences',
      { schema: { tags, summary: 'Your notification preferences (defaults: email and push on, nothing muted)', security: Bearer, response: { 200: NotificationPreferencesSchema, ...problems(401) } } },
      async (req) => {
        const me = req.principal!;
        return preferences.get(me.userId, me.shard);
      },
    );
    app.patch(
      '/me/notification-preferences',
      { schema: { tags, summary: 'Change some notification preferences; the others stay', security: Bearer, body: PatchPreferences, response: { 200: NotificationPreferencesSchema, ...problems(400, 401) } } },
      async (req) => {
        const me = req.principal!;
        return preferences.update(me.userId, me.shard, req.body);
      },
    );
  };
}
