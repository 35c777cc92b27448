import { describe, expect, it } from 'vitest';
import { LookupCache } from '../../settlement/ingest/lookup-cache.ts';

describe('LookupCache', () => {
  it('shares one lookup between concurrent calls, keeps it for the TTL, then looks again', async () => {
    let clock = 0;
    const calls: string[] = [];
    const cache = new LookupCache(async (k) => (calls.push(k), `value of ${k}`), 2_000, () => clock);
    const [a, b] = await Promise.all([cache.get('gw-1'), cache.get('gw-1')]);
    expect([a, b]).toEqual(['value of gw-1', 'value of gw-1']);
    clock = 1_999;
    await cache.get('gw-1');
    expect(calls).toEqual(['gw-1']);
    clock = 2_000;
    await cache.get('gw-1');
    expect(calls).toEqual(['gw-1', 'gw-1']);
    cache.forget('gw-1');
    await cache.get('gw-1');
    expect(calls).toHaveLength(3);
  });

  it('forgets a failed lookup at once, so the next call tries again', async () => {
    let fail = true;
    const cache = new LookupCache(async () => {
      if (fail) throw new Error('database away');
      return 'ok';
    }, 60_000);
    await expect(cache.get('k')).rejects.toThrow('database away');
    fail = false;
    await expect(cache.get('k')).resolves.toBe('ok');
  });
});
