import { Aedes } from 'aedes';
import { createServer, type Server } from 'node:net';

export interface EmbeddedBroker {
  /** mqtt://host:port that clients connect to. */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Starts aedes on host:port (port 0 picks a free one). */
export async function startEmbeddedBroker(host: string, port: number): Promise<EmbeddedBroker> {
  const aedes = await Aedes.createBroker();
  const server: Server = createServer(aedes.handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const actualPort = typeof addr === 'object' && addr ? addr.port : port;
  return {
    url: `mqtt://${host.includes(':') ? `[${host}]` : host}:${actualPort}`,
    port: actualPort,
    async close() {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      // Connected clients hold sockets open; closing the broker ends them, then the listener.
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
