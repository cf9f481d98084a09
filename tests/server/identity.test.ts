/**
 * Sign-In with Ethereum against the real server and with real viem accounts (secp256k1 keys made
 * here): a valid sign-in answers the address and a token that binds to a signaling session; replay,
 * expiry, wrong domain, URI, chain or signer, malformed input and a token presented by another
 * session are each refused with their typed code, every time.
 */
import { pino } from 'pino';
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts';
import { createSiweMessage } from 'viem/siwe';
import { afterEach, describe, expect, it } from 'vitest';
import { isRingworkError, type ErrorCode } from '../../shared/errors';
import { SIGNALING_VERSION } from '../../shared/protocol/signaling';
import { loadCatalog } from '../../signaling-server/src/catalog';
import type { Clock } from '../../signaling-server/src/clock';
import { createSiweAuth } from '../../signaling-server/src/identity/siwe-auth';
import { createSignalingServer, type SignalingServer } from '../../signaling-server/src/server';
import { runs } from '../helpers/tier';
import { connect } from './signaling-test-client';

const servers: SignalingServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

async function startServer(
  opts: { requireIdentity?: boolean } = {},
): Promise<{ port: number; host: string }> {
  const srv = createSignalingServer(
    {
      host: '127.0.0.1',
      port: 0,
      testMode: true,
      ...(opts.requireIdentity ? { requireIdentity: true } : {}),
      limits: { sessionBurstPerIp: 1000, sessionsPerSecondPerIp: 1000 },
    },
    { logger: pino({ level: 'silent' }), catalog: await loadCatalog([]) },
  );
  servers.push(srv);
  const { port } = await srv.start();
  return { port, host: `127.0.0.1:${port}` };
}

/** A clock the test moves by hand. */
function manualClock(start = Date.parse('2026-06-01T12:00:00Z')): Clock & { advance(ms: number): void } {
  let now = start;
  return {
    now: () => now,
    advance: (ms) => void (now += ms),
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (h) => clearTimeout(h),
    setInterval: (fn, ms) => setInterval(fn, ms),
    clearInterval: (h) => clearInterval(h),
  };
}

interface Signed {
  message: string;
  signature: `0x${string}`;
}

async function sign(
  account: PrivateKeyAccount,
  fields: { domain: string; nonce: string; now: number } & Partial<{
    uri: string;
    chainId: number;
    address: `0x${string}`;
    expirationTime: Date;
    issuedAt: Date;
    notBefore: Date;
  }>,
  signer: PrivateKeyAccount = account,
): Promise<Signed> {
  const message = createSiweMessage({
    address: fields.address ?? account.address,
    chainId: fields.chainId ?? 1,
    domain: fields.domain,
    nonce: fields.nonce,
    uri: fields.uri ?? `http://${fields.domain}/`,
    version: '1',
    issuedAt: fields.issuedAt ?? new Date(fields.now),
    statement: 'Contribute to Ringwork.',
    ...(fields.expirationTime ? { expirationTime: fields.expirationTime } : {}),
    ...(fields.notBefore ? { notBefore: fields.notBefore } : {}),
  });
  return { message, signature: await signer.signMessage({ message }) };
}

async function codeOf(p: Promise<unknown>): Promise<ErrorCode | 'resolved'> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    if (isRingworkError(e)) return e.code;
    throw e;
  }
}

describe('SIWE service (real keys, manual clock)', () => {
  const domain = 'ringwork.example:8080';

  it(`accepts valid sign-ins and refuses every bad one with its code (${runs(20)} keys each)`, async () => {
    const clock = manualClock();
    const auth = createSiweAuth({ clock, chainId: 1, nonceTtlMs: 60_000 });
    const refusals: Record<string, { want: ErrorCode; got: Array<ErrorCode | 'resolved'> }> = {};
    const expect1 = async (name: string, want: ErrorCode, p: Promise<unknown>): Promise<void> => {
      (refusals[name] ??= { want, got: [] }).got.push(await codeOf(p));
    };
    for (let i = 0; i < runs(20); i++) {
      const account = privateKeyToAccount(generatePrivateKey());
      const other = privateKeyToAccount(generatePrivateKey());
      const now = clock.now();
      const nonce = (): string => auth.issueNonce('bucket-a').nonce;

      const good = await sign(account, { domain, nonce: nonce(), now });
      const ok = await auth.verify(good, { domain });
      expect(ok.address).toBe(account.address);
      expect(auth.checkToken(ok.token)).toMatchObject({ address: account.address });
      await expect1('replay', 'AUTH_NONCE_INVALID', auth.verify(good, { domain }));

      await expect1(
        'expired message',
        'AUTH_MESSAGE_EXPIRED',
        auth.verify(await sign(account, { domain, nonce: nonce(), now, expirationTime: new Date(now - 1) }), {
          domain,
        }),
      );
      await expect1(
        'issued long ago',
        'AUTH_MESSAGE_EXPIRED',
        auth.verify(
          await sign(account, { domain, nonce: nonce(), now, issuedAt: new Date(now - 3_600_000) }),
          { domain },
        ),
      );
      await expect1(
        'not valid yet',
        'AUTH_MESSAGE_EXPIRED',
        auth.verify(await sign(account, { domain, nonce: nonce(), now, notBefore: new Date(now + 60_000) }), {
          domain,
        }),
      );
      const stale = await sign(account, { domain, nonce: nonce(), now });
      clock.advance(61_000);
      await expect1('expired nonce', 'AUTH_NONCE_INVALID', auth.verify(stale, { domain }));
      const later = clock.now();
      await expect1(
        'unknown nonce',
        'AUTH_NONCE_INVALID',
        auth.verify(await sign(account, { domain, nonce: 'abcdefgh12345678', now: later }), { domain }),
      );
      await expect1(
        'wrong domain',
        'AUTH_WRONG_DOMAIN',
        auth.verify(await sign(account, { domain: 'evil.example', nonce: nonce(), now: later }), { domain }),
      );
      await expect1(
        'wrong uri',
        'AUTH_WRONG_URI',
        auth.verify(
          await sign(account, { domain, nonce: nonce(), now: later, uri: 'https://evil.example/' }),
          {
            domain,
          },
        ),
      );
      await expect1(
        'wrong chain',
        'AUTH_WRONG_CHAIN',
        auth.verify(await sign(account, { domain, nonce: nonce(), now: later, chainId: 137 }), { domain }),
      );
      await expect1(
        'wrong signer',
        'AUTH_BAD_SIGNATURE',
        auth.verify(await sign(account, { domain, nonce: nonce(), now: later }, other), { domain }),
      );
      const tampered = await sign(account, { domain, nonce: nonce(), now: later });
      await expect1(
        'tampered statement',
        'AUTH_BAD_SIGNATURE',
        auth.verify(
          { ...tampered, message: tampered.message.replace('Contribute to Ringwork.', 'Send all funds.') },
          { domain },
        ),
      );
      await expect1(
        'malformed text',
        'AUTH_BAD_MESSAGE',
        auth.verify({ message: 'hello', signature: good.signature }, { domain }),
      );
      await expect1(
        'malformed signature',
        'AUTH_BAD_MESSAGE',
        auth.verify({ message: good.message, signature: '0x1234' }, { domain }),
      );
      await expect1('malformed body', 'AUTH_BAD_MESSAGE', auth.verify({ message: 3 }, { domain }));
    }
    const summary = Object.fromEntries(
      Object.entries(refusals).map(([k, r]) => [k, r.got.filter((c) => c === r.want).length / r.got.length]),
    );
    expect(summary).toEqual(Object.fromEntries(Object.keys(refusals).map((k) => [k, 1])));
    expect(Object.keys(refusals)).toHaveLength(14);
  });

  it('refuses forged, foreign and expired tokens', async () => {
    const clock = manualClock();
    const auth = createSiweAuth({ clock, tokenTtlMs: 10_000 });
    const other = createSiweAuth({ clock });
    const account = privateKeyToAccount(generatePrivateKey());
    const domain = 'a.example';
    const { token } = await auth.verify(
      await sign(account, { domain, nonce: auth.issueNonce('b').nonce, now: clock.now() }),
      { domain },
    );
    expect(auth.checkToken(token).address).toBe(account.address);
    const code = (f: () => unknown): ErrorCode | 'ok' => {
      try {
        f();
        return 'ok';
      } catch (e) {
        return isRingworkError(e) ? e.code : 'ok';
      }
    };
    expect(code(() => other.checkToken(token))).toBe('AUTH_BAD_TOKEN');
    const [payload, mac] = token.split('.') as [string, string];
    const forged = Buffer.from(
      JSON.stringify({
        ...JSON.parse(Buffer.from(payload, 'base64url').toString()),
        a: privateKeyToAccount(generatePrivateKey()).address,
      }),
    ).toString('base64url');
    expect(code(() => auth.checkToken(`${forged}.${mac}`))).toBe('AUTH_BAD_TOKEN');
    expect(code(() => auth.checkToken('nonsense'))).toBe('AUTH_BAD_TOKEN');
    clock.advance(10_001);
    expect(code(() => auth.checkToken(token))).toBe('AUTH_BAD_TOKEN');
  });

  it('keeps the nonce store bounded per client and in total', () => {
    const auth = createSiweAuth({ clock: manualClock(), maxNoncesPerBucket: 4, maxNonces: 10 });
    const first = auth.issueNonce('x').nonce;
    for (let i = 0; i < 20; i++) auth.issueNonce('x');
    expect(auth.pendingNonces).toBe(4);
    for (let i = 0; i < 20; i++) auth.issueNonce(`y${i}`);
    expect(auth.pendingNonces).toBe(10);
    expect(first).toMatch(/^[A-Za-z0-9]{8,}$/);
  });
});

describe('SIWE over HTTP and the signaling hello (real server)', () => {
  const signIn = async (
    host: string,
    account: PrivateKeyAccount,
  ): Promise<{ status: number; body: { address?: string; token?: string; error?: { code: string } } }> => {
    const n = (await (await fetch(`http://${host}/api/auth/nonce`)).json()) as {
      nonce: string;
      expiresAt: number;
    };
    expect(n.expiresAt).toBeGreaterThan(Date.now());
    const signed = await sign(account, { domain: host, nonce: n.nonce, now: Date.now() });
    const res = await fetch(`http://${host}/api/auth/verify`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(signed),
    });
    return { status: res.status, body: (await res.json()) as never };
  };

  it('signs in, binds the address to the session, and refuses the token in another session', async () => {
    const { port, host } = await startServer();
    const account = privateKeyToAccount(generatePrivateKey());
    const r = await signIn(host, account);
    expect(r.status).toBe(200);
    expect(r.body.address).toBe(account.address);
    const token = r.body.token!;

    const a = await connect(port);
    a.send({ type: 'hello', v: SIGNALING_VERSION, roles: ['contributor'], identity: token });
    const welcome = await a.next('welcome');
    expect(welcome.address).toBe(account.address);

    // The same token in a new session: refused, no welcome.
    const b = await connect(port);
    b.send({ type: 'hello', v: SIGNALING_VERSION, roles: ['contributor'], identity: token });
    expect((await b.next('error')).code).toBe('AUTH_TOKEN_OTHER_SESSION');
    expect(b.messages.some((m) => m.type === 'welcome')).toBe(false);

    // The owner resumes with its token on a new connection: accepted, same address.
    const c = await connect(port);
    c.send({
      type: 'hello',
      v: SIGNALING_VERSION,
      roles: ['contributor'],
      resume: { peerId: welcome.peerId, token: welcome.token },
      identity: token,
    });
    expect((await c.next('welcome')).address).toBe(account.address);

    // Anonymous stays allowed by default; a forged token is refused.
    const d = await connect(port);
    d.send({ type: 'hello', v: SIGNALING_VERSION, roles: ['requester'] });
    expect((await d.next('welcome')).address).toBeUndefined();
    const e = await connect(port);
    e.send({
      type: 'hello',
      v: SIGNALING_VERSION,
      roles: ['requester'],
      identity: `${'A'.repeat(40)}.${'B'.repeat(43)}`,
    });
    expect((await e.next('error')).code).toBe('AUTH_BAD_TOKEN');
    for (const x of [a, b, c, d, e]) {
      expect(x.violations).toEqual([]);
      x.close();
    }
  });

  it('HTTP refusals carry the typed code: replay 401, wrong domain 401, malformed 400', async () => {
    const { host } = await startServer();
    const account = privateKeyToAccount(generatePrivateKey());
    const n = (await (await fetch(`http://${host}/api/auth/nonce`)).json()) as { nonce: string };
    const signed = await sign(account, { domain: host, nonce: n.nonce, now: Date.now() });
    const post = async (body: unknown): Promise<{ status: number; code?: string }> => {
      const res = await fetch(`http://${host}/api/auth/verify`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
      const j = (await res.json()) as { error?: { code: string } };
      return { status: res.status, ...(j.error ? { code: j.error.code } : {}) };
    };
    expect(await post(signed)).toEqual({ status: 200 });
    expect(await post(signed)).toEqual({ status: 401, code: 'AUTH_NONCE_INVALID' });
    const n2 = (await (await fetch(`http://${host}/api/auth/nonce`)).json()) as { nonce: string };
    // Signed for localhost while the request names 127.0.0.1: another authority.
    const wrongHost = await sign(account, {
      domain: host.replace('127.0.0.1', 'localhost'),
      nonce: n2.nonce,
      now: Date.now(),
    });
    expect(await post(wrongHost)).toEqual({ status: 401, code: 'AUTH_WRONG_DOMAIN' });
    expect(await post('{not json')).toEqual({ status: 400, code: 'AUTH_BAD_MESSAGE' });
    expect(await post({ message: 'x'.repeat(10_000), signature: '0x' })).toEqual({
      status: 400,
      code: 'AUTH_BAD_MESSAGE',
    });
  });

  it('--require-identity refuses an anonymous hello and accepts a signed-in one', async () => {
    const { port, host } = await startServer({ requireIdentity: true });
    const anon = await connect(port);
    anon.send({ type: 'hello', v: SIGNALING_VERSION, roles: ['contributor'] });
    expect((await anon.next('error')).code).toBe('AUTH_IDENTITY_REQUIRED');
    const account = privateKeyToAccount(generatePrivateKey());
    const { body } = await signIn(host, account);
    const ok = await connect(port);
    ok.send({ type: 'hello', v: SIGNALING_VERSION, roles: ['contributor'], identity: body.token });
    expect((await ok.next('welcome')).address).toBe(account.address);
    anon.close();
    ok.close();
  });
});
