import { describe, expect, it } from 'vitest';
import { gatewayClientId, topics } from '../../protocol/index.ts';
import {
  canPublish,
  canReceive,
  canSubscribe,
  clientIdAllowed,
  filterCovers,
  isValidFilter,
  settlementUsernames,
  type Principal,
} from '../../settlement/broker/acl.ts';
import { hashSecret, MemoryCredentialStore, newSecret, verifySecret, verifySecretAsync } from '../../settlement/broker/credentials.ts';

const A: Principal = { kind: 'gateway', gatewayId: 'gw-a' };
const settlement: Principal = { kind: 'settlement' };

describe('MQTT topic filters', () => {
  it.each([
    ['a/b', true],
    ['a/+/c', true],
    ['a/#', true],
    ['#', true],
    ['+', true],
    ['a//b', true],
    ['', false],
    ['a/#/c', false],
    ['a/b#', false],
    ['a/b+/c', false],
    ['a/\u0000', false],
  ])('%j is a valid filter: %s', (f, ok) => {
    expect(isValidFilter(f)).toBe(ok);
  });

  it.each([
    // pattern, filter, covered
    ['a/b', 'a/b', true],
    ['a/+', 'a/b', true],
    ['a/+', 'a/+', true],
    ['a/b', 'a/+', false],
    ['a/+', 'a/#', false],
    ['a/#', 'a', true],
    ['a/#', 'a/b/c', true],
    ['a/#', 'a/+/#', true],
    ['a/#', '#', false],
    ['a/+/c', 'a/b/c/d', false],
    ['a/+/c', 'a/b', false],
    ['+/+', '#', false],
    ['#', 'anything/at/all', true],
  ])('%s covers %s: %s', (p, f, ok) => {
    expect(filterCovers(p, f)).toBe(ok);
  });
});

describe('gateway publish rules', () => {
  it('may publish its own readings and status (the status is also its last will)', () => {
    expect(canPublish(A, topics.readings('gw-a'))).toBe(true);
    expect(canPublish(A, topics.status('gw-a'))).toBe(true);
  });

  it.each([
    topics.readings('gw-b'),
    topics.status('gw-b'),
    topics.ack('gw-a'),
    topics.reject('gw-a'),
    topics.ack('gw-b'),
    topics.price('thailand_central'),
    topics.auction('thailand_central'),
    'gtx/v1/gw/gw-a/readings/extra',
    'gtx/v1/gw/gw-a',
    'gtx/v2/gw/gw-a/readings',
    '$SYS/broker/load',
    'other/topic',
    'gtx/v1/gw/+/readings',
    'gtx/v1/#',
    '',
  ])('may not publish on %j', (t) => {
    expect(canPublish(A, t)).toBe(false);
  });

  it('a gateway principal with an id that is not a valid id may do nothing', () => {
    for (const id of ['+', '#', 'a/b', '', 'gw a']) {
      const p: Principal = { kind: 'gateway', gatewayId: id };
      expect(canPublish(p, topics.readings(id))).toBe(false);
      expect(canSubscribe(p, topics.ack(id))).toBe(false);
    }
  });
});

describe('gateway subscribe rules', () => {
  it.each([
    topics.ack('gw-a'),
    topics.reject('gw-a'),
    topics.allPrices,
    topics.allAuctions,
    topics.price('thailand_central'),
    topics.auction('thailand_central'),
  ])('may subscribe to %j', (f) => {
    expect(canSubscribe(A, f)).toBe(true);
  });

  it.each([
    '#',
    '+',
    'gtx/#',
    'gtx/v1/#',
    'gtx/+/gw/gw-a/ack',
    'gtx/v1/gw/#',
    'gtx/v1/gw/+/ack',
    'gtx/v1/gw/+/+',
    'gtx/v1/gw/gw-a/#',
    'gtx/v1/gw/gw-a/+',
    'gtx/v1/+/gw-a/ack',
    topics.ack('gw-b'),
    topics.reject('gw-b'),
    topics.readings('gw-a'),
    topics.status('gw-a'),
    topics.allReadings,
    topics.allStatus,
    'gtx/v1/market/#',
    'gtx/v1/market/+/+',
    'gtx/v1/market/thailand_central/#',
    'gtx/v1/market/thailand_central/orders',
    '$share/g/gtx/v1/gw/gw-a/ack',
    '$SYS/#',
    'gtx/v1/gw/gw-a/ack/#',
    'gtx/v1/gw/gw-a/ack#',
    '',
  ])('may not subscribe to %j', (f) => {
    expect(canSubscribe(A, f)).toBe(false);
  });

  it('receives only what it may subscribe to', () => {
    expect(canReceive(A, topics.ack('gw-a'))).toBe(true);
    expect(canReceive(A, topics.price('m'))).toBe(true);
    expect(canReceive(A, topics.ack('gw-b'))).toBe(false);
    expect(canReceive(A, topics.allPrices)).toBe(false); // a wildcard is not a topic
  });
});

describe('settlement rules', () => {
  it.each([
    topics.readings('gw-a'),
    topics.status('gw-b'),
    topics.ack('gw-a'),
    topics.reject('gw-b'),
    topics.price('thailand_central'),
    topics.auction('thailand_central'),
    'gtx/v1/anything/else',
  ])('may publish on %j', (t) => {
    expect(canPublish(settlement, t)).toBe(true);
  });

  it.each(['gtx/v1', 'gtx/v2/x', 'other', '$SYS/x', 'gtx/v1/gw/+/ack', 'gtx/v1/#', ''])('may not publish on %j', (t) => {
    expect(canPublish(settlement, t)).toBe(false);
  });

  it.each([
    topics.allReadings,
    topics.allStatus,
    topics.everything,
    'gtx/v1/+/+/readings',
    '$share/ingest/gtx/v1/gw/+/readings',
    '$share/ingest/gtx/v1/#',
  ])('may subscribe to %j', (f) => {
    expect(canSubscribe(settlement, f)).toBe(true);
  });

  it.each(['#', '+/v1/#', 'gtx/#', 'gtx/+/gw/+/readings', 'gtx/v1', '$SYS/#', '$share/ingest/#', '$share//gtx/v1/#', '$share/g+/gtx/v1/#', '$share/ingest', 'gtx/v1/#/x'])(
    'may not subscribe to %j',
    (f) => {
      expect(canSubscribe(settlement, f)).toBe(false);
    },
  );
});

describe('MQTT credentials', () => {
  it('issues 256-bit base64url secrets', () => {
    const s = newSecret();
    expect(s).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(s, 'base64url')).toHaveLength(32);
    expect(newSecret()).not.toBe(s);
  });

  it('hashes with a salt and verifies in constant time', async () => {
    const s = newSecret();
    const h1 = hashSecret(s);
    const h2 = hashSecret(s);
    expect(h1).toMatch(/^scrypt\$16384\$8\$1\$[A-Za-z0-9_-]+\$[A-Za-z0-9_-]+$/);
    expect(h1).not.toBe(h2);
    expect(h1).not.toContain(s);
    expect(verifySecret(s, h1)).toBe(true);
    expect(verifySecret(s, h2)).toBe(true);
    expect(verifySecret(`${s}x`, h1)).toBe(false);
    expect(verifySecret('', h1)).toBe(false);
    expect(await verifySecretAsync(s, h1)).toBe(true);
    expect(await verifySecretAsync('nope', h1)).toBe(false);
  });

  it('treats a malformed or hostile stored hash as a mismatch, without throwing', () => {
    const s = newSecret();
    const good = hashSecret(s);
    for (const bad of ['', 'plain', good.replace('scrypt', 'bcrypt'), good.replace('$16384$', '$1000$'), good.replace('$16384$', '$1073741824$'), `${good}$`]) {
      expect(verifySecret(s, bad)).toBe(false);
    }
  });

  it('MemoryCredentialStore keeps hashes, never the secret', async () => {
    const store = new MemoryCredentialStore();
    const gw = newSecret();
    store.putGateway('gw-a', gw);
    store.putSettlement('settlement-secret');
    const rec = await store.lookup('gw-a');
    expect(rec).toMatchObject({ kind: 'gateway', gatewayId: 'gw-a', status: 'active' });
    expect(JSON.stringify(rec)).not.toContain(gw);
    expect(verifySecret(gw, rec!.secretHash)).toBe(true);
    expect(await store.lookup('gtx-settlement')).toMatchObject({ kind: 'settlement' });
    store.setGatewayStatus('gw-a', 'revoked');
    expect(await store.lookup('gw-a')).toMatchObject({ status: 'revoked' });
    expect(await store.lookup('gw-b')).toBeUndefined();
    expect(() => store.putGateway('gtx-settlement', gw)).toThrow(/cannot be a gateway/);
    expect(() => store.putGateway('gw/+', gw)).toThrow(/cannot be a gateway/);
  });

  it.each(['gtx-settlement', 'gtx-settlement-1', 'GTX-Settlement-2', 'gtx-settlementx'])('MemoryCredentialStore refuses the reserved gateway id %j', (id) => {
    expect(() => new MemoryCredentialStore().putGateway(id, newSecret())).toThrow(/reserved for the settlement/);
  });
});

describe('identity rules', () => {
  it('binds a gateway to the client id gtx-gw-<id>, and the settlement to ids starting with gtx-settlement', () => {
    expect(clientIdAllowed(A, gatewayClientId('gw-a'))).toBe(true);
    for (const id of ['gw-a', gatewayClientId('gw-b'), 'gtx-gw-gw-a-1', 'GTX-GW-gw-a', '', 'gtx-settlement-1']) expect(clientIdAllowed(A, id), id).toBe(false);
    expect(clientIdAllowed(settlement, 'gtx-settlement')).toBe(true);
    expect(clientIdAllowed(settlement, 'gtx-settlement-host-42')).toBe(true);
    for (const id of ['gtx-gw-gw-a', 'settlement', '']) expect(clientIdAllowed(settlement, id), id).toBe(false);
  });

  it('gives a gateway principal under a reserved name nothing at all', () => {
    const reserved: Principal = { kind: 'gateway', gatewayId: 'GTX-Settlement-2' };
    expect(clientIdAllowed(reserved, gatewayClientId('GTX-Settlement-2'))).toBe(false);
    expect(canPublish(reserved, topics.readings('GTX-Settlement-2'))).toBe(false);
    expect(canSubscribe(reserved, topics.ack('GTX-Settlement-2'))).toBe(false);
  });

  it('names one settlement worker gtx-settlement, several gtx-settlement-1 … N', () => {
    expect(settlementUsernames(1)).toEqual(['gtx-settlement']);
    expect(settlementUsernames(3)).toEqual(['gtx-settlement-1', 'gtx-settlement-2', 'gtx-settlement-3']);
    for (const bad of [0, -1, 1.5, 1000]) expect(() => settlementUsernames(bad)).toThrow(/workers/);
  });
});
