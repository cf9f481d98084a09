/**
 * A minimal TCP load balancer on loopback for the cluster tests: each new client connection goes to
 * the next backend in rotation that accepts it (a dead backend is skipped), bytes piped both ways.
 * Like a sticky-less balancer in front of several server instances: a peer whose instance died
 * reconnects to the same address and lands on a live one.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

/** A running balancer. */
export interface TcpBalancer {
  readonly port: number;
  /** Closes the listener and every piped connection. */
  close(): Promise<void>;
}

/** Starts a balancer over `backends` (loopback ports). */
export async function startTcpBalancer(backends: readonly number[]): Promise<TcpBalancer> {
  let next = 0;
  const sockets = new Set<Socket>();
  const track = (s: Socket): void => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };
  /** Connects to the first live backend from the rotation's position, or fails after trying all. */
  const dial = (tries: number): Promise<Socket> =>
    new Promise((resolve, reject) => {
      const port = backends[next++ % backends.length]!;
      const up = connect({ host: '127.0.0.1', port });
      up.once('connect', () => resolve(up));
      up.once('error', (e) => {
        up.destroy();
        if (tries + 1 >= backends.length) reject(e);
        else dial(tries + 1).then(resolve, reject);
      });
    });
  const server: Server = createServer((client) => {
    track(client);
    client.pause();
    dial(0).then(
      (up) => {
        track(up);
        client.pipe(up).pipe(client);
        client.resume();
        client.once('close', () => up.destroy());
        up.once('close', () => client.destroy());
        client.on('error', () => up.destroy());
        up.on('error', () => client.destroy());
      },
      () => client.destroy(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
