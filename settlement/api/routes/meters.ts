import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { ApiDeps } from '../server.ts';
import { READERS } from '../auth.ts';

const MeterSummary = Type.Object({ meter: Type.String(), readings: Type.Integer(), lastSeq: Type.Integer() });

export const meterRoutes: FastifyPluginAsync<ApiDeps> = async (app, { ledger }) => {
  app.get('/meters', { config: { roles: READERS }, schema: { response: { 200: Type.Array(MeterSummary) } } }, async () => ledger.meters());
};
