/**
 * Stake on chain with the real server process: RingworkStake is deployed with viem on the in-process
 * EVM (ganache behind a loopback JSON-RPC endpoint, tools/contracts/dev-chain.ts), three contributors
 * stake with their own viem accounts, and the server runs with `--chain-rpc --stake-contract
 * --slasher-key --min-stake`. A signed-in contributor without stake and an anonymous one are refused
 * ring membership (`STAKE_INSUFFICIENT`, never in a ring); the staked ones form the ring; one of them
 * tampers (validation's test-only injection on a real stories260K ring: it commits honestly and
 * sends noise), the requester's validated pipeline locates it and reports the signed evidence, and
 * the server slashes it on chain with that evidence's hash — read back as the `Slashed` event and
 * the stake with viem, and as the transaction hash in the ledger.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseEther, type Address } from 'viem';
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { SIGNALING_VERSION } from '../../shared/protocol/signaling';
import { loadCatalog } from '../../signaling-server/src/catalog';
import { evidenceHash } from '../../signaling-server/src/ledger/validation-credit';
import { RINGWORK_STAKE_ABI } from '../../signaling-server/src/stake/ringwork-stake-artifact';
import { deployStake, stakeAs, startDevChain, type DevChain } from '../../tools/contracts/dev-chain';
import { scaled } from '../helpers/timeouts';
import { tamperedEvidence } from '../helpers/work-proof';
import { capability, connect, type TestClient } from './signaling-test-client';
import { signIn } from '../helpers/siwe';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Starts the real server process; resolves with its port once it prints RINGWORK_LISTENING. */
async function startProcess(args: string[]) {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'signaling-server/src/main.ts', '--port', '0', '--host', '127.0.0.1', ...args],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  let out = '';
  const port = await new Promise<number>((done, fail) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /RINGWORK_LISTENING (\d+)/.exec(out);
      if (m) done(Number(m[1]));
    });
    child.once('exit', (code) => fail(new Error(`server exited ${code}: ${err}`)));
  });
  return { child, port, host: `127.0.0.1:${port}`, log: () => out + err };
}

describe('stake on chain in the real server process', () => {
  it(
    'refuses unstaked and anonymous contributors ring membership, and slashes a located deviant with its evidence hash',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'ringwork-stake-'));
      dirs.push(dir);
      const model = (await loadCatalog([]))[0]!;
      const chain: DevChain = await startDevChain();
      const clients: TestClient[] = [];
      let server: Awaited<ReturnType<typeof startProcess>> | undefined;
      try {
        const deployer = privateKeyToAccount(generatePrivateKey());
        const slasherKey = generatePrivateKey();
        const slasher = privateKeyToAccount(slasherKey);
        const stakers = [0, 1, 2].map(() => privateKeyToAccount(generatePrivateKey()));
        const unstaked = privateKeyToAccount(generatePrivateKey());
        for (const a of [deployer, slasher, unstaked, ...stakers]) await chain.fund(a.address, '10');
        const contract = await deployStake(chain, deployer, { slasher: slasher.address });
        for (const a of stakers) await stakeAs(chain, a, contract, '2');
        const stakeOf = (a: Address) =>
          chain.client.readContract({
            address: contract,
            abi: RINGWORK_STAKE_ABI,
            functionName: 'stakeOf',
            args: [a],
          });
        expect(await stakeOf(stakers[0]!.address)).toBe(parseEther('2'));
        const keyFile = join(dir, 'slasher.key');
        writeFileSync(keyFile, `${slasherKey}\n`);

        server = await startProcess([
          '--data-dir',
          join(dir, 'db'),
          '--replan-debounce-ms',
          '20',
          '--chain-rpc',
          chain.rpcUrl,
          '--stake-contract',
          contract,
          '--slasher-key',
          keyFile,
          '--min-stake',
          parseEther('1').toString(),
        ]);
        const host = server.host;
        const contributor = async (account: PrivateKeyAccount | null) => {
          const c = await connect(server!.port);
          clients.push(c);
          c.send({
            type: 'hello',
            v: SIGNALING_VERSION,
            roles: ['contributor'],
            ...(account ? { identity: await signIn(host, account) } : {}),
          });
          const id = (await c.next('welcome')).peerId;
          c.send({ type: 'profile', v: 1, capability: capability(1_000_000) });
          return { c, id };
        };
        // Refused first: without stake (signed in, or anonymous) a peer never joins a ring that needs it.
        const poor = await contributor(unstaked);
        const anon = await contributor(null);
        const errors = [];
        for (const p of [poor, anon]) errors.push(await p.c.next('error', scaled(10_000)));
        expect(errors.map((e) => e.code)).toEqual(['STAKE_INSUFFICIENT', 'STAKE_INSUFFICIENT']);
        expect(errors[0]!.details).toMatchObject({ address: unstaked.address, stakeWei: '0' });
        expect(errors[1]!.details).toMatchObject({ address: null });
        const staked = [];
        for (const a of stakers) staked.push({ ...(await contributor(a)), account: a });
        const byPeer = new Map(staked.map((s) => [s.id, s]));

        const req = await connect(server.port);
        clients.push(req);
        req.send({ type: 'hello', v: SIGNALING_VERSION, roles: ['requester'] });
        await req.next('welcome');
        req.send({ type: 'ring-request', v: 1, model: model.descriptor.id });
        const ring = await req.next('ring', scaled(20_000));
        const inRing = ring.stages.map((s) => s.peer);
        expect(inRing.length).toBeGreaterThanOrEqual(2);
        for (const p of inRing) expect(byPeer.has(p)).toBe(true);
        expect(inRing).not.toContain(poor.id);
        expect(inRing).not.toContain(anon.id);
        const refused = await poor.c.next('unassigned', scaled(5_000));
        expect(refused.reason).toMatch(/stake/);

        // Stage 0 of a real ring of the same shape tampers; the requester's pipeline locates it.
        const tampered = await tamperedEvidence({
          model: model.descriptor.id,
          stages: ring.stages.length,
          tamper: 0,
          steps: 4,
        });
        expect(tampered.evidence.length).toBeGreaterThan(0);
        ring.stages.forEach((s, i) =>
          byPeer.get(s.peer)!.c.send({ type: 'validation-key', v: 1, key: tampered.keys[i]! }),
        );
        const located = tampered.evidence[0]!;
        expect(located).toMatchObject({ stage: 0, reason: 'equivocation' });
        const evidence = { ...located, peerId: ring.stages[0]!.peer, model: model.descriptor.id };
        const deviant = byPeer.get(evidence.peerId)!.account;
        // The keys are registered in order on the server's sockets before the evidence arrives.
        await vi.waitFor(
          async () => {
            const r = await fetch(`http://${host}/api/network`);
            const peers = ((await r.json()) as { peers: Array<{ id: string; validationKey?: boolean }> })
              .peers;
            expect(peers.length).toBeGreaterThan(0);
          },
          { timeout: scaled(5_000) },
        );
        req.send({ type: 'validation-evidence', v: 1, ringId: ring.ringId, evidence });
        const hash = evidenceHash(evidence);

        // Slashed on chain, with that evidence hash, all of the deviant's stake.
        const events = await vi.waitFor(
          async () => {
            const ev = await chain.client.getContractEvents({
              address: contract,
              abi: RINGWORK_STAKE_ABI,
              eventName: 'Slashed',
              fromBlock: 0n,
            });
            expect(ev).toHaveLength(1);
            return ev;
          },
          { timeout: scaled(20_000), interval: 100 },
        );
        expect(events[0]!.args).toEqual({
          peer: deviant.address,
          amount: parseEther('2'),
          evidenceHash: hash,
        });
        expect(await stakeOf(deviant.address)).toBe(0n);
        for (const a of stakers.filter((s) => s !== deviant))
          expect(await stakeOf(a.address)).toBe(parseEther('2'));
        expect(
          await chain.client.readContract({
            address: contract,
            abi: RINGWORK_STAKE_ABI,
            functionName: 'evidenceUsed',
            args: [hash],
          }),
        ).toBe(true);
        // The ledger recorded the penalty and the slash's transaction hash.
        const account = await vi.waitFor(
          async () => {
            const a = (await (
              await fetch(`http://${host}/api/ledger/account/${deviant.address}`)
            ).json()) as {
              penalties: Array<{ evidenceHash: string; reason: string }>;
              slashes: Array<{ evidenceHash: string; state: string; txHash?: string }>;
            };
            expect(a.slashes[0]?.state).toBe('sent');
            return a;
          },
          { timeout: scaled(10_000), interval: 100 },
        );
        expect(account.penalties).toEqual([
          expect.objectContaining({ evidenceHash: hash, reason: 'equivocation' }),
        ]);
        expect(account.slashes).toEqual([
          expect.objectContaining({ evidenceHash: hash, txHash: events[0]!.transactionHash }),
        ]);
        // The stake route tells the Contribute page the same.
        const st = (await (await fetch(`http://${host}/api/stake/${deviant.address}`)).json()) as Record<
          string,
          unknown
        >;
        expect(st).toMatchObject({
          enabled: true,
          stakeWei: '0',
          requiredWei: { default: parseEther('1').toString() },
        });
      } finally {
        for (const c of clients) c.ws.terminate();
        if (server) {
          server.child.kill('SIGTERM');
          await new Promise((r) => server!.child.once('exit', r));
        }
        await chain.close();
      }
    },
    scaled(120_000),
  );
});
