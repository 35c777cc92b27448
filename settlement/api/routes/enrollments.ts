import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import { ENROLLMENT_PATH, EnrollmentRequestSchema, EnrollmentResponseSchema, type EnrollmentRequest } from '../../../protocol/index.ts';
import { EnrollmentError } from '../../registry/enrollment.ts';
import type { ApiDeps } from '../server.ts';
import { ErrorSchema } from './errors.ts';

/** POST /api/v1/enrollments: the installer's one-time code is the credential. */
export const enrollmentRoutes: FastifyPluginAsync<ApiDeps> = async (app, { enrollment, log }) => {
  app.post<{ Body: EnrollmentRequest }>(
    ENROLLMENT_PATH,
    {
      config: { public: 'the one-time installer code in the body is the credential' },
      schema: {
        body: EnrollmentRequestSchema,
        response: { 201: EnrollmentResponseSchema, 400: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema, 410: ErrorSchema },
      },
    },
    async (req, reply) => {
      try {
        const res = await enrollment.enroll(req.body);
        log.info({ gateway: res.gateway, market: res.market, owner: res.owner, meters: res.meters }, 'gateway enrolled');
        return reply.code(201).send(res);
      } catch (e) {
        if (e instanceof EnrollmentError) {
          log.warn({ gateway: req.body.gateway, reason: e.code, ip: req.ip }, 'enrollment refused');
          return reply.code(e.status).send({ code: e.code, message: e.message });
        }
        throw e;
      }
    },
  );
};

export const EnrollmentCodeResponse = Type.Object({ code: Type.String(), market: Type.String(), owner: Type.String(), expiresAt: Type.String() });
