/** A generator process: takes its plan over IPC, runs it, sends snapshots and the result back. */
import { LoadGenerator } from './generator.js';
import type { GeneratorPlan } from './types.js';

process.once('message', (plan: GeneratorPlan) => {
  const generator = new LoadGenerator(plan, (msg) => {
    if (msg.type === 'done') process.send!(msg, () => process.disconnect());
    else process.send!(msg);
  });
  generator.run().catch((err: unknown) => {
    process.stderr.write(`generator ${plan.index}: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
});
