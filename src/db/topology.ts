/**
 * The topology: ranges of logical shards -> clusters -> regions. One cluster in the default
 * profile; a JSON file (WALLET_TOPOLOGY) describes more. Validated at start: every shard 0-999
 * must belong to exactly one cluster.
 */
import { readFileSync } from 'node:fs';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { SHARD_COUNT } from '../shared/ids.js';

const ClusterSpec = Type.Object(
  {
    name: Type.String({ pattern: '^[a-z0-9-]{1,40}$' }),
    region: Type.String({ minLength: 1, maxLength: 40 }),
    shards: Type.Tuple([Type.Integer({ minimum: 0, maximum: SHARD_COUNT - 1 }), Type.Integer({ minimum: 0, maximum: SHARD_COUNT - 1 })]),
    primary: Type.String({ pattern: '^postgres(ql)?://' }),
    replicas: Type.Optional(Type.Array(Type.String({ pattern: '^postgres(ql)?://' }), { maxItems: 16 })),
    poolMax: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  },
  { additionalProperties: false },
);
export const TopologySchema = Type.Object({ clusters: Type.Array(ClusterSpec, { minItems: 1, maxItems: 1000 }) }, { additionalProperties: false });
export type Topology = Static<typeof TopologySchema>;
export type ClusterSpec = Static<typeof ClusterSpec>;

export function singleClusterTopology(url: string): Topology {
  return { clusters: [{ name: 'main', region: 'local', shards: [0, SHARD_COUNT - 1], primary: url }] };
}

export function validateTopology(input: unknown, source = 'topology'): Topology {
  const err = Value.Errors(TopologySchema, input).First();
  if (err) throw new Error(`${source}: ${err.path || '/'} ${err.message}`);
  const topology = input as Topology;
  const owner = new Array<string | undefined>(SHARD_COUNT);
  for (const c of topology.clusters) {
    const [from, to] = c.shards;
    if (from > to) throw new Error(`${source}: cluster ${c.name} has shard range ${from}-${to} (from > to)`);
    for (let s = from; s <= to; s++) {
      if (owner[s]) throw new Error(`${source}: shard ${s} belongs to both ${owner[s]} and ${c.name}`);
      owner[s] = c.name;
    }
  }
  const missing = owner.findIndex((o) => o === undefined);
  if (missing !== -1) throw new Error(`${source}: shard ${missing} belongs to no cluster`);
  if (new Set(topology.clusters.map((c) => c.name)).size !== topology.clusters.length) throw new Error(`${source}: cluster names must be unique`);
  return topology;
}

export function readTopologyFile(path: string): Topology {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`WALLET_TOPOLOGY: cannot read ${path} as JSON (${(err as Error).message})`);
  }
  return validateTopology(parsed, `WALLET_TOPOLOGY ${path}`);
}
