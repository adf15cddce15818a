/** Prints the plain closing line CI reads: `tests: N passed, N failed`. */
import type { Reporter, TestModule } from 'vitest/node';

export default class CountReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, errors: ReadonlyArray<unknown>): void {
    let passed = 0;
    let failed = 0;
    for (const m of modules) {
      const tests = [...m.children.allTests()];
      let moduleFailed = 0;
      for (const t of tests) {
        const state = t.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') moduleFailed++;
      }
      // A file whose setup or loading failed: its tests did not run, and each counts as failed
      // (at least one for a file with none collected), so a broken file can never read as green.
      if (m.state() === 'failed' && moduleFailed === 0) moduleFailed = Math.max(1, tests.filter((t) => t.result().state !== 'passed').length);
      failed += moduleFailed;
    }
    if (errors.length) failed += errors.length;
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed\n`);
  }
}
