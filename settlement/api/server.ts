import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import type { Ledger } from '../ledger/ledger.ts';
import type { SettlementMetrics } from '../metrics.ts';
import { healthRoutes, type ReadinessSources } from './routes/health.ts';
import { meterRoutes } from './routes/meters.ts';
import { enrollmentRoutes } from './routes/enrollments.ts';
import { adminRoutes } from './routes/admin.ts';
import { energyRoutes } from './routes/energy.ts';
import { marketRoutes, type MarketApiDeps } from './routes/market.ts';
import { governanceRoutes, type GovernanceApiDeps } from './routes/governance.ts';
import { recRoutes } from './routes/recs.ts';
import { rewardRoutes } from './routes/rewards.ts';
import { eventRoutes, type LiveEventsDeps } from './routes/events.ts';
import { meRoutes } from './routes/me.ts';
import { webRoutes } from './routes/web.ts';
import { accountRoutes } from './routes/accounts.ts';
import { gatewayRoutes } from './routes/gateways.ts';
import { enrollmentCodeRoutes } from './routes/enrollment-codes.ts';
import { apiKeyRoutes } from './routes/api-keys.ts';
import type { GatewayPresence } from '../ingest/status-handler.ts';
import type { RecMinter } from '../recs/minting.ts';
import type { RecLifecycle } from '../recs/lifecycle.ts';
import type { Enrollment } from '../registry/enrollment.ts';
import type { ApiKeyStore } from '../registry/api-keys.ts';
import { checkAdminKey } from '../config.ts';
import { registerAuth } from './auth.ts';
import { clientErrorAnswer, registerErrorAnswers } from './routes/errors.ts';
import { registerApiDocs } from './openapi.ts';
import { registerWriteRateLimit } from './rate-limit.ts';

export interface ApiDeps {
  ledger: Ledger;
  metrics: SettlementMetrics;
  log: Logger;
  enrollment: Enrollment;
  /** API keys stored in the ledger (`gtx settlement api-key create`). */
  apiKeys: ApiKeyStore;
  /** The configured admin key, which acts as an admin API key; null = stored keys only. */
  adminKey: string | null;
  codeTtlMs: number;
  /** Called after a revocation so caches drop the gateway at once. */
  onRevoke: (gatewayId: string) => void;
  /** What GET /health/ready checks besides the ledger; absent when the API runs without ingest. */
  readiness?: ReadinessSources;
  /** Orders, auctions, balances (routes/market.ts); absent: no market routes. */
  market?: MarketApiDeps;
  /** NRG and staking (routes/governance.ts); absent: no governance routes. */
  governance?: GovernanceApiDeps;
  /** Certificates (routes/recs.ts); absent: no certificate routes. */
  recs?: { minter: RecMinter; lifecycle: RecLifecycle };
  /** Live events (routes/events.ts: GET /api/v1/events); absent: no event stream. */
  events?: LiveEventsDeps;
  /** Write requests a minute per API key (per address without one) under /api/v1 (rate-limit.ts); absent or 0: no limit. */
  writeRateLimitPerMinute?: number;
  /** Each gateway's last retained status message (GET /api/v1/gateways); absent: its readings alone say whether it is online. */
  gatewayPresence?: (gateway: string) => GatewayPresence | undefined;
}

/**
 * The settlement's HTTP server: one plugin per resource, TypeBox schemas on every route, every
 * route declaring who may call it (auth.ts), and every non-2xx answer `{"code","message"}`
 * (routes/errors.ts).
 */
export function buildApi(deps: ApiDeps): FastifyInstance {
  checkAdminKey(deps.adminKey);
  // Request lines only at debug; errors and warnings from routes still show, unless the parent is quieter (error, silent).
  const parentLevel = deps.log.levelVal;
  const apiLog = deps.log.child({ component: 'api' }, { level: parentLevel <= 20 || parentLevel > 40 ? deps.log.level : 'warn' });
  const app = Fastify({
    loggerInstance: apiLog as FastifyBaseLogger,
    // Validation errors carry the schema and value, so an answer can quote the field's value and examples (errors.ts).
    ajv: { customOptions: { verbose: true } },
    clientErrorHandler: clientErrorAnswer,
  }).withTypeProvider<TypeBoxTypeProvider>();
  // Before any route: these watch routes being added (onRoute). The docs mark their own routes public, so before auth.
  const writeRateLimitPerMinute = deps.writeRateLimitPerMinute ?? 0;
  registerApiDocs(app, { writeRateLimitPerMinute });
  registerWriteRateLimit(app, writeRateLimitPerMinute, apiLog);
  registerErrorAnswers(app);
  registerAuth(app, { apiKeys: deps.apiKeys, adminKey: deps.adminKey, log: apiLog });
  app.register(healthRoutes, deps);
  app.register(meterRoutes, { ...deps, prefix: '/api/v1' });
  app.register(energyRoutes, { ...deps, prefix: '/api/v1' });
  app.register(enrollmentRoutes, deps);
  app.register(adminRoutes, { ...deps, prefix: '/api/v1/admin' });
  if (deps.market) app.register(marketRoutes, { ...deps.market, prefix: '/api/v1' });
  if (deps.governance) app.register(governanceRoutes, { ...deps.governance, prefix: '/api/v1' });
  if (deps.recs) app.register(recRoutes, { ...deps.recs, prefix: '/api/v1' });
  app.register(rewardRoutes, { db: deps.ledger.db, prefix: '/api/v1' });
  if (deps.events) app.register(eventRoutes, { ...deps.events, db: deps.ledger.db, prefix: '/api/v1' });
  app.register(meRoutes, { db: deps.ledger.db, prefix: '/api/v1' });
  app.register(webRoutes);
  app.register(accountRoutes, { db: deps.ledger.db, prefix: '/api/v1' });
  app.register(gatewayRoutes, { db: deps.ledger.db, ...(deps.gatewayPresence ? { presence: deps.gatewayPresence } : {}), prefix: '/api/v1' });
  app.register(enrollmentCodeRoutes, { ...deps, prefix: '/api/v1' });
  app.register(apiKeyRoutes, { apiKeys: deps.apiKeys, ledger: deps.ledger, prefix: '/api/v1' });
  return app;
}

/** Listens on host:port (0 = a free port) and returns the base URL. */
export async function listenApi(app: FastifyInstance, host: string, port: number): Promise<string> {
  await app.listen({ host, port });
  const addr = app.server.address();
  const actual = typeof addr === 'object' && addr ? addr.port : port;
  return `http://${host.includes(':') ? `[${host}]` : host}:${actual}`;
}
