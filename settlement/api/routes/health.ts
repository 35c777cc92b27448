import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { ApiDeps } from '../server.ts';

export const healthRoutes: FastifyPluginAsync<ApiDeps> = async (app, { ledger, metrics }) => {
  app.get(
    '/health',
    { config: { public: 'liveness for load balancers; no per-meter data' }, schema: { response: { 200: Type.Object({ status: Type.Literal('ok'), ledger: Type.String() }) } } },
    async () => {
      await ledger.counts(); // proves the ledger answers
      return { status: 'ok' as const, ledger: ledger.engine };
    },
  );
  app.get('/metrics', { config: { public: 'totals for Prometheus scrapers; no per-meter data' } }, async (_req, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });
};
