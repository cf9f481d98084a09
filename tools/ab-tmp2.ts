import { createOrtShardRunner } from '../shared/runtime/ort-shard-runner.js';
import { nodeOrt, openNodeModel } from '../signaling-server/src/model/open-node-model.js';
const model = { url: process.argv[2]! };
const end = Number(process.argv[3] ?? 8);
const variants: Record<string, Record<string, unknown>> = JSON.parse(process.argv[4]!);
const ort = nodeOrt(Number(process.env.THREADS ?? 1));
const mk = async (name: string, extra: Record<string, unknown>) => {
  const wrapped = { ...ort, InferenceSession: { create: (m: Uint8Array, o: Record<string, unknown>) => ort.InferenceSession.create(m, { ...o, ...extra }) } } as never;
  const r = createOrtShardRunner({ ort: wrapped, openModel: async (ref) => (await openNodeModel(ref)).source, probeWebGpu: async () => ({ ok: false, reason: '' }) });
  const res = await r.load({ model, range: [0, end], weightFormat: 'f32', contextLength: 200, logits: 'last', backend: 'wasm', attention: (extra.attention as never) ?? 'ops' });
  return { name, r, res, cpu: 0, wall: 0, ort: 0, steps: 0 };
};
const V = [] as Awaited<ReturnType<typeof mk>>[];
for (const [n, e] of Object.entries(variants)) V.push(await mk(n, e));
const argmax = (d: Float32Array) => { let b = 0; for (let i = 1; i < d.length; i++) if (d[i]! > d[b]!) b = i; return b; };
const prompt = Array.from({ length: 32 }, (_, i) => (i * 37) % 200 + 1);
const B = Number(process.env.BLK ?? 8);
for (let round = 0; round < 6; round++) {
  const st = await Promise.all(V.map(async (x) => {
    const s = await x.r.openSession();
    const out = await x.r.step(s, { tokens: Int32Array.from(prompt), position: 0 });
    return { x, s, out, pos: prompt.length, toks: [] as number[] };
  }));
  for (let blk = 0; blk < 12; blk++) for (let j = 0; j < st.length; j++) {
    const v = st[(j + blk) % st.length]!;
    const c0 = process.cpuUsage(); const t0 = performance.now(); let o = 0;
    for (let i = 0; i < B; i++) { const t = argmax(v.out.data); v.toks.push(t); v.out = await v.x.r.step(v.s, { tokens: Int32Array.of(t), position: v.pos++ }); o += v.out.ms; }
    const c = process.cpuUsage(c0); v.x.wall += performance.now() - t0; v.x.cpu += (c.user + c.system) / 1000; v.x.steps += B; v.x.ort += o;
  }
  const same = st.every((v) => v.toks.join() === st[0]!.toks.join());
  for (const v of st) await v.x.r.closeSession(v.s);
  if (round === 0) { for (const x of V) x.cpu = x.wall = x.steps = x.ort = 0; continue; }
  console.log(`r${round} ` + V.map((x) => `${x.name}: wall ${(x.wall / x.steps).toFixed(2)} ort ${(x.ort / x.steps).toFixed(2)} cpu ${(x.cpu / x.steps).toFixed(2)}`).join(' | ') + ` same=${same}`);
}
process.exit(0);
