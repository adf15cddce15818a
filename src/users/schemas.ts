import { Type } from '@sinclair/typebox';
import { Timestamp } from '../http/schemas.js';

export const UserSchema = Type.Object(
  {
    id: Type.String(),
    email: Type.String(),
    name: Type.String(),
    kind: Type.Union([Type.Literal('person'), Type.Literal('merchant')]),
    region: Type.String(),
    createdAt: Timestamp,
  },
  { description: 'a user' },
);
