import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { ConnectionError, FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify';
import { Type } from '@sinclair/typebox';

/** Every error the API returns: a stable code and a sentence a person can act on. */
export const ErrorSchema = Type.Object(
  {
    code: Type.String({ description: 'Stable machine-readable reason, e.g. bad_request, not_found, unknown_meter, bad_range, internal_error.' }),
    message: Type.String({ description: 'What went wrong and what to do about it, in one sentence.' }),
  },
  { description: 'The one shape of every non-2xx answer.' },
);

/** ErrorSchema with what a route means by this answer, for the route's documentation. */
export function describedError(description: string) {
  return Type.Object(ErrorSchema.properties, { description });
}

/** The code of an error answer that has no more specific one, by HTTP status. */
const CODE_BY_STATUS: Readonly<Record<number, string>> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  406: 'not_acceptable',
  408: 'request_timeout',
  411: 'length_required',
  413: 'body_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
  429: 'too_many_requests',
  431: 'headers_too_large',
};

/** Where fastify found the invalid value, as a caller would name it. */
const PART: Readonly<Record<string, string>> = {
  querystring: 'query parameter',
  body: 'body field',
  params: 'path parameter',
  headers: 'header',
};

/** Echoed input is cut short: the message is for a person, not a copy of the request. */
function clip(text: string, max = 120): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/**
 * One validation failure as a sentence that names the field. With ajv's `verbose` (server.ts)
 * the error carries its schema and value, so a pattern is explained by the schema's `examples`.
 */
export function validationMessage(context: string | undefined, error: FastifySchemaValidationError | undefined): string {
  const part = PART[context ?? ''] ?? context ?? 'request';
  if (error === undefined) return `the ${part} is not valid`;
  const params = error.params as Record<string, unknown>;
  const path = error.instancePath.replace(/^\//, '').replace(/\//g, '.');
  if (error.keyword === 'required' && typeof params['missingProperty'] === 'string') {
    const field = [path, params['missingProperty']].filter(Boolean).join('.');
    return `${part} "${field}" is missing`;
  }
  if (error.keyword === 'additionalProperties' && typeof params['additionalProperty'] === 'string') {
    return `${part} "${[path, params['additionalProperty']].filter(Boolean).join('.')}" is not allowed here`;
  }
  const where = path === '' ? (context === 'body' ? 'the body' : `the ${part}s`) : `${part} "${path}"`;
  const verbose = error as FastifySchemaValidationError & { parentSchema?: { examples?: unknown }; data?: unknown };
  if (error.keyword === 'pattern' || error.keyword === 'format') {
    const got = typeof verbose.data === 'string' ? ` is ${JSON.stringify(clip(verbose.data, 60))}` : '';
    const examples = verbose.parentSchema?.examples;
    if (Array.isArray(examples) && examples.length > 0) {
      const list = examples.map(String);
      return `${where}${got}: expected a value like ${list.length > 1 ? `${list.slice(0, -1).join(', ')} or ${list.at(-1)}` : list[0]}`;
    }
  }
  return `${where} ${error.message ?? 'is not valid'}`;
}

/** What a failed request gets: status and body in the one error shape. */
function errorAnswer(app: FastifyInstance, err: FastifyError): { status: number; code: string; message: string } | undefined {
  if (err.validation) {
    return { status: 400, code: 'bad_request', message: validationMessage(err.validationContext, err.validation[0]) };
  }
  switch (err.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return { status: 400, code: 'bad_request', message: 'the body is not valid JSON: check quotes, commas and brackets' };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { status: 400, code: 'bad_request', message: 'the body is empty: send a JSON object, or no content-type header when there is no body' };
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, code: 'body_too_large', message: `the body is larger than ${app.initialConfig.bodyLimit ?? 1_048_576} bytes, the most this API takes` };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { status: 415, code: 'unsupported_media_type', message: 'send the body as JSON, with content-type: application/json' };
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return { status: 400, code: 'bad_request', message: 'the body is not as long as its content-length header says' };
  }
  const status = err.statusCode ?? 500;
  // Other client errors (fastify's or a plugin's) keep their status and sentence.
  if (status >= 400 && status < 500) return { status, code: CODE_BY_STATUS[status] ?? 'bad_request', message: err.message };
  return undefined;
}

/** Method and URL pattern of each route, to tell an unknown path (404) from a wrong method (405). */
interface RouteShape {
  methods: string[];
  segments: string[];
}

function matches(route: RouteShape, path: string): boolean {
  const parts = path.split('/');
  for (let i = 0; i < route.segments.length; i++) {
    const seg = route.segments[i]!;
    if (seg === '*') return true;
    const part = parts[i];
    if (part === undefined) return false;
    if (seg.startsWith(':')) {
      if (part === '') return false;
    } else if (seg !== part) return false;
  }
  return parts.length === route.segments.length;
}

/**
 * Makes every non-2xx answer `{"code","message"}` (ErrorSchema): validation and body-parser
 * failures (400/413/415), unknown routes (404 not_found), a known path with a method it does not
 * take (405 method_not_allowed, with Allow), requests Node's HTTP parser refuses, and anything
 * unexpected (500 internal_error: a generic sentence for the caller, the error in the log).
 * Call on the root instance before the routes are registered.
 */
export function registerErrorAnswers(app: FastifyInstance): void {
  const routes: RouteShape[] = [];

  app.addHook('onRoute', (route) => {
    routes.push({ methods: [route.method].flat(), segments: route.url.split('/') });
    // Documented in the route's schema (and so the OpenAPI document) like its other answers.
    const schema = route.schema;
    const response = schema?.response as Record<string, unknown> | undefined;
    if (schema && response) {
      if (schema.querystring || schema.body || schema.params) response[400] ??= ErrorSchema;
      response[500] ??= ErrorSchema;
    }
  });

  app.setErrorHandler((err: FastifyError, req, reply) => {
    const answer = errorAnswer(app, err);
    if (answer) {
      req.log.debug({ err, status: answer.status, code: answer.code }, 'API request refused');
      return reply.code(answer.status).send({ code: answer.code, message: answer.message });
    }
    req.log.error({ err, method: req.method, url: req.url }, 'API request failed');
    return reply
      .code(500)
      .send({ code: 'internal_error', message: `the server could not answer this request; the error is in the settlement's log (request ${req.id})` });
  });

  app.setNotFoundHandler((req: FastifyRequest, reply: FastifyReply) => {
    const q = req.url.indexOf('?');
    const path = q < 0 ? req.url : req.url.slice(0, q);
    const allowed = [...new Set(routes.filter((r) => matches(r, path)).flatMap((r) => r.methods))];
    if (allowed.length > 0) {
      return reply
        .code(405)
        .header('allow', allowed.join(', '))
        .send({ code: 'method_not_allowed', message: `${req.method} is not allowed on ${clip(path)}; it takes ${allowed.join(', ')}` });
    }
    return reply.code(404).send({ code: 'not_found', message: `no route ${req.method} ${clip(path)}: the routes are listed in README.md, "REST API and metrics"` });
  });
}

/**
 * Requests Node's HTTP parser refuses before fastify sees them (an unknown method, a malformed
 * request line, oversized headers) get the same shape; fastify's default writes its own.
 * Written and closed the way fastify's default handler (and Node's) does.
 */
export function clientErrorAnswer(err: ConnectionError, socket: Socket): void {
  // A reset connection is already gone: nothing to answer.
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, body] =
    err.code === 'HPE_INVALID_METHOD'
      ? [501, { code: 'not_implemented', message: 'the server does not implement this HTTP method; the API takes GET, HEAD and POST' }]
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, { code: 'headers_too_large', message: 'the request headers are too large' }]
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, { code: 'request_timeout', message: 'the request did not arrive in time' }]
          : [400, { code: 'bad_request', message: 'the request is not valid HTTP/1.1' }];
  const text = JSON.stringify(body);
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
    );
  }
  socket.destroy(err);
}
