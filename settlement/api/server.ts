import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import type { Ledger } from '../ledger/ledger.ts';
import type { SettlementMetrics } from '../metrics.ts';
import { healthRoutes } from './routes/health.ts';
import { meterRoutes } from './routes/meters.ts';
import { enrollmentRoutes } from './routes/enrollments.ts';
import { adminRoutes } from './routes/admin.ts';
import { energyRoutes } from './routes/energy.ts';
import type { Enrollment } from '../registry/enrollment.ts';

export interface ApiDeps {
  ledger: Ledger;
  metrics: SettlementMetrics;
  log: Logger;
  enrollment: Enrollment;
  adminKey: string | null;
  codeTtlMs: number;
  /** Called after a revocation so caches drop the gateway at once. */
  onRevoke: (gatewayId: string) => void;
}

/** The settlement's HTTP server: one plugin per resource, TypeBox schemas on every route. */
export function buildApi(deps: ApiDeps): FastifyInstance {
  // Request lines only at debug; errors and warnings from routes still show.
  const apiLog = deps.log.child({ component: 'api' }, { level: deps.log.level === 'debug' ? 'debug' : 'warn' });
  const app = Fastify({ loggerInstance: apiLog as FastifyBaseLogger }).withTypeProvider<TypeBoxTypeProvider>();
  app.register(healthRoutes, deps);
  app.register(meterRoutes, { ...deps, prefix: '/api/v1' });
  app.register(energyRoutes, { ...deps, prefix: '/api/v1' });
  app.register(enrollmentRoutes, deps);
  app.register(adminRoutes, { ...deps, prefix: '/api/v1/admin' });
  return app;
}

/** Listens on host:port (0 = a free port) and returns the base URL. */
export async function listenApi(app: FastifyInstance, host: string, port: number): Promise<string> {
  await app.listen({ host, port });
  const addr = app.server.address();
  const actual = typeof addr === 'object' && addr ? addr.port : port;
  return `http://${host.includes(':') ? `[${host}]` : host}:${actual}`;
}
