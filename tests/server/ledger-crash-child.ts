/**
 * Child process of ledger-process.slow.test.ts: opens the ledger in the data directory given as
 * argv[2] and records validated steps for the address argv[3] forever, printing
 * `COMMITTED <total steps>` each time a record's commit resolved. The parent kills it with SIGKILL
 * mid-write and checks that every step reported committed is in the database.
 */
import { pino } from 'pino';
import { systemClock } from '../../signaling-server/src/clock';
import { openLedger } from '../../signaling-server/src/ledger/ledger';

const [dataDir, address] = process.argv.slice(2) as [string, string];
const ledger = await openLedger(
  { kind: 'dir', dataDir },
  {
    clock: systemClock,
    logger: pino({ level: 'error' }),
    flopsOf: (_m, [a, b]) => (b - a) * 1000,
    batchMs: 5,
  },
);
process.stdout.write('READY\n');
let total = 0;
for (let i = 0; ; i++) {
  // Several records in flight at once, so the kill lands while a batch is being written.
  const steps = [1, 2, 3, 4];
  await Promise.all(
    steps.map((s, k) =>
      ledger.recordSteps({
        sessionId: `crash-${i}-${k}`,
        model: 'm',
        requester: { peerId: 'p_requester_000000' },
        stages: [{ peerId: 'p_stage_0000000000', address, units: [0, 2] }],
        steps: s,
        verdict: 'passed',
      }),
    ),
  );
  total += 10;
  process.stdout.write(`COMMITTED ${total}\n`);
}
