import { describe, expect, it } from 'vitest';
import { parseGatewayTopic, replyTopicGateway, topics } from '../../protocol/index.ts';

describe('per-gateway topics', () => {
  it('are parsed back into their gateway and kind', () => {
    for (const kind of ['readings', 'status', 'ack', 'reject'] as const) {
      expect(parseGatewayTopic(topics[kind]('gw-1'))).toEqual({ gateway: 'gw-1', kind });
    }
    for (const t of ['gtx/v1/gw/a/b/ack', 'gtx/v1/gw/+/readings', 'gtx/v2/gw/a/ack', 'gtxxv1/gw/a/ack', topics.price('m')]) {
      expect(parseGatewayTopic(t), t).toBeNull();
    }
  });

  it('name the gateway a reply goes to exactly when the parser says it is an ack or reject topic', () => {
    for (const t of [topics.ack('gw-1'), topics.reject('gw-1'), topics.readings('gw-1'), topics.status('gw-1'), 'gtx/v1/gw/a/b/ack', 'gtx/v1/gw//ack', 'gtx/v1/gw/+/ack', 'gtx/v1/gw/#/reject', 'gtx/v1/gw/ack', topics.auction('m'), 'x/ack']) {
      const parsed = parseGatewayTopic(t);
      const expected = parsed && (parsed.kind === 'ack' || parsed.kind === 'reject') ? parsed.gateway : undefined;
      expect(replyTopicGateway(t), t).toBe(expected);
    }
  });
});
