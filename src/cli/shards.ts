/** `wallet shards list`, `wallet shards move --shard N --to CLUSTER` and `wallet shards abort --shard N` (src/db/shard-move.ts). */
import { InvalidArgumentError, type Command } from 'commander';
import cliProgress from 'cli-progress';
import { withPlatform } from './ops.js';
import { abortShardMove, moveShard, MoveRefused, type MoveProgress } from '../db/shard-move.js';
import type { Db } from '../db/index.js';
import { SHARD_COUNT } from '../shared/ids.js';

/** what `wallet shards list` prints: each cluster's shard ranges as routed now, and the moves */
export async function describeShards(db: Db): Promise<string> {
  await db.refreshShardMap();
  const out: string[] = [];
  for (const c of db.clusters) {
    const ranges: string[] = [];
    let from = -1;
    for (let s = 0; s <= SHARD_COUNT; s++) {
      const mine = s < SHARD_COUNT && db.forShard(s) === c;
      if (mine && from < 0) from = s;
      if (!mine && from >= 0) {
        ranges.push(from === s - 1 ? `${from}` : `${from}-${s - 1}`);
        from = -1;
      }
    }
    out.push(`${c.name} (${c.region}): ${ranges.join(', ') || 'no shards'}`);
  }
  const overrides = [...db.shardOverrides()].sort(([a], [b]) => a - b);
  out.push('', overrides.length ? 'moved shards:' : 'moved shards: none');
  for (const [shard, o] of overrides) out.push(`  ${shard} → ${o.cluster} (version ${o.version}, ${o.movedAt.toISOString()})`);
  const open = (
    await Promise.all(
      db.clusters.map((c) =>
        c.sql<{ id: string; shard: number; to_cluster: string; status: string; updated_at: Date }[]>`
          select id, shard, to_cluster, status, updated_at from shard_moves where status in ('copying', 'fenced', 'closed') order by shard`.then((rows) => rows.map((r) => ({ ...r, from: c.name }))),
      ),
    )
  ).flat();
  if (open.length) {
    out.push('', 'moves in progress (or interrupted: run them again to finish):');
    for (const m of open) out.push(`  shard ${m.shard}: ${m.from} → ${m.to_cluster}, ${m.status} since ${m.updated_at.toISOString()} (${m.id})`);
  }
  return out.join('\n') + '\n';
}

function shardOption(raw: string): number {
  const n = Number(raw);
  if (!/^\d{1,3}$/.test(raw) || n >= SHARD_COUNT) throw new InvalidArgumentError(`must be an integer from 0 to ${SHARD_COUNT - 1}`);
  return n;
}

function msOption(raw: string): number {
  const n = Number(raw);
  if (!/^\d{1,9}$/.test(raw)) throw new InvalidArgumentError('must be a number of milliseconds');
  return n;
}

const PHASES: Record<MoveProgress['phase'], string> = {
  plan: 'planning',
  copy: 'copying rows',
  'catch-up': 'catching up',
  fence: 'fencing writes',
  final: 'final pass',
  money: 'moving balances',
  flip: 'flipping the route',
  cleanup: 'source cleanup',
  done: 'done',
};

export function registerShardCommands(program: Command): void {
  const shards = program.command('shards').description('logical shards: where they live, and moving them between clusters');

  shards
    .command('list')
    .description('print each cluster\'s shards (topology plus moves), moved shards and unfinished moves')
    .action(async () => {
      await withPlatform(async (p) => process.stdout.write(await describeShards(p.db)));
    });

  shards
    .command('abort')
    .description('give up an unfinished move of a shard that has not moved balances yet (its fence goes, writes flow again)')
    .requiredOption('--shard <n>', 'the logical shard (0-999)', shardOption)
    .action(async (opts: { shard: number }) => {
      try {
        const aborted = await withPlatform((p) => abortShardMove(p.db, opts.shard));
        process.stdout.write(aborted ? `aborted move ${aborted.moveId} of shard ${opts.shard} (${aborted.from} → ${aborted.to}); it stays on ${aborted.from}\n` : `shard ${opts.shard} has no unfinished move\n`);
      } catch (err) {
        if (!(err instanceof MoveRefused)) throw err;
        process.stderr.write(`wallet shards abort: ${err.message}\n`);
        process.exitCode = 1;
      }
    });

  shards
    .command('move')
    .description('move a shard to another cluster online: copy, catch up, fence its writes briefly, flip the route for every process')
    .requiredOption('--shard <n>', 'the logical shard (0-999)', shardOption)
    .requiredOption('--to <cluster>', 'the target cluster\'s name (see `wallet shards list`)')
    .option('--hold-wait-ms <ms>', 'wait this long for open holds on the shard to resolve before refusing', msOption, 0)
    .action(async (opts: { shard: number; to: string; holdWaitMs: number }) => {
      // progress on stderr, so stdout stays the result
      const bar = new cliProgress.SingleBar({ format: '{phase} [{bar}] {percentage}% | {value}/{total} {detail}', hideCursor: true, clearOnComplete: false, stream: process.stderr }, cliProgress.Presets.shades_classic);
      let shown: string | undefined;
      try {
        const result = await withPlatform((p) =>
          moveShard(p.db, {
            shard: opts.shard,
            to: opts.to,
            holdWaitMs: opts.holdWaitMs,
            subAccounts: p.config.ledgerSystemSubAccounts,
            // every process polling the map has re-read it before the source's copy goes
            graceMs: Math.max(1000, 3 * p.config.shardMapPollMs),
            onProgress: ({ phase, done, total, detail }) => {
              if (shown !== phase) {
                if (shown) bar.stop();
                bar.start(Math.max(total, 1), done, { phase: PHASES[phase].padEnd(18), detail: detail ?? '' });
                shown = phase;
              } else {
                bar.setTotal(Math.max(total, 1));
                bar.update(done, { detail: detail ?? '' });
              }
            },
          }),
        );
        bar.stop();
        const moved = Object.entries(result.moved).map(([c, a]) => `${a} ${c}`).join(', ') || 'no balances';
        process.stdout.write(
          `shard ${result.shard} moved ${result.from} → ${result.to} (move ${result.moveId}, route version ${result.version})\n` +
            `  ${result.rows} rows copied, ${result.wallets} wallets carried (${moved}); writes fenced for ${result.fencedMs} ms\n` +
            '  every process routes it there within SHARD_MAP_POLL_MS (or at once when it meets the fence)\n',
        );
      } catch (err) {
        bar.stop();
        if (err instanceof MoveRefused) {
          process.stderr.write(`wallet shards move: ${err.message}\n`);
          process.exitCode = 1;
          return;
        }
        throw err;
      }
    });
}
