import type { FastifyInstance } from 'fastify';
import { buildApi, type ApiDeps } from '../../settlement/api/server.ts';
import type { Ledger } from '../../settlement/ledger/ledger.ts';
import { createMetrics } from '../../settlement/metrics.ts';
import type { ApiKeyStore } from '../../settlement/registry/api-keys.ts';
import { Enrollment } from '../../settlement/registry/enrollment.ts';
import { testLog } from './stack.ts';

/** The real REST API over `ledger`, with stored keys only (no configured admin key) and the route groups in `extra`. */
export function testApi(ledger: Ledger, apiKeys: ApiKeyStore, extra: Partial<ApiDeps> = {}): FastifyInstance {
  return buildApi({
    ledger,
    metrics: createMetrics(),
    log: testLog('api'),
    enrollment: new Enrollment(ledger, { now: Date.now, mqttUrl: () => 'mqtt://unused' }),
    apiKeys,
    adminKey: null,
    codeTtlMs: 3600_000,
    onRevoke: () => undefined,
    ...extra,
  });
}
