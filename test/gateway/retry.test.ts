import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { loadGatewayConfig, type GatewayConfig } from '../../gateway/config.ts';
import { startGateway, type Gateway, type GatewayDeps } from '../../gateway/main.ts';
import { topics, type GatewayStatus } from '../../protocol/index.ts';
import { startSettlement, type Settlement } from '../../settlement/main.ts';
import { enrollGatewayConfig, settlementConfig, startSimulator, startTestSettlement, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';
import { capturedLog } from './captured-log.ts';
import { gtx, writeGatewayToml } from './gateway-toml.ts';

/** The meter's chain in the ledger is whole: seq 1..n, each linking to the one before. */
async function expectWholeChain(settlement: Settlement, meter: string, n: number): Promise<void> {
  const rs = await settlement.ledger.readings(meter);
  expect(rs.map((r) => r.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
  for (let i = 1; i < rs.length; i++) expect(rs[i]!.prev).toBe(rs[i - 1]!.hash);
}

describe('gateway refusals: retry, dead letters, requeue; clock sanity', () => {
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });
  const setup = async (o: { auth: boolean; settlementNow?: () => number }) => {
    const d = tempDir('gtx-gw-retry-');
    cleanups.push(() => d.remove());
    const settlement = o.settlementNow
      ? await startSettlement(settlementConfig(d.path, 0, o.auth), { now: o.settlementNow, log: testLog('settlement') })
      : await startTestSettlement(d.path, 0, o.auth);
    cleanups.push(() => settlement.stop());
    const sim = await startSimulator('sdm120', 'prosumer', 9);
    cleanups.push(() => sim.sim.stop());
    return { dir: d.path, settlement, sim };
  };
  const run = async (cfg: GatewayConfig, deps: GatewayDeps): Promise<{ gw: Gateway; stop(): Promise<void> }> => {
    const gw = await startGateway(cfg, deps);
    let stopped = false;
    const stop = async () => {
      if (!stopped) await gw.stop();
      stopped = true;
    };
    cleanups.push(stop);
    return { gw, stop };
  };

  it('keeps envelopes refused for a retryable reason, resends them with backoff, and loses nothing', { timeout: 60_000 }, async () => {
    // Settlement's clock is an hour behind: every reading looks an hour ahead (future_timestamp).
    let settlementSkew = -3_600_000;
    const { dir, settlement, sim } = await setup({ auth: true, settlementNow: () => Date.now() + settlementSkew });
    const config = writeGatewayToml(dir, { id: 'gw-retry', meter: 'm-retry', meterPort: sim.port });
    const cfg = loadGatewayConfig(config);
    await enrollGatewayConfig(settlement, cfg);
    const { log, warnings } = capturedLog();
    const { gw, stop } = await run(cfg, { log, retryFirstMs: 300, retryMaxMs: 1_200 });

    await waitFor(() => gw.stats().deferred >= 6, 'retryable refusals');
    expect(gw.stats()).toMatchObject({ rejected: 0, acked: 0 });
    expect(warnings(/refused an envelope for now/)[0]).toMatchObject({ reason: 'future_timestamp', attempts: expect.any(Number), nextAttempt: expect.any(String) });
    // Sent again and refused again: attempts grow, nothing becomes a dead letter.
    await waitFor(() => warnings(/refused an envelope for now/).some((l) => (l.attempts as number) >= 3), 'a third attempt of one envelope');
    const st = gtx(['gateway', 'status', '--config', config]);
    expect(st.status, st.stderr).toBe(0);
    expect(st.stdout).toMatch(/waiting to be retried: [1-9]\d* envelope\(s\)/);
    expect(st.stdout).toMatch(/future_timestamp: [1-9]\d* envelope\(s\), refused up to \d+ time\(s\), next attempt .*; last detail: meter m-retry seq \d+: .* is ahead of settlement time/);
    expect(st.stdout).toContain('dead letters (refused for good): 0');
    expect(await settlement.ledger.readings('m-retry')).toEqual([]);

    const sealedWhileRefused = gw.stats().sealed;
    settlementSkew = 0;
    await waitFor(async () => (await settlement.ledger.readings('m-retry')).length >= sealedWhileRefused + 4, 'the kept readings and new ones in the ledger', 20_000);
    await waitFor(() => gw.outboxDepth() === 0 && gw.stats().inFlight === 0, 'an empty outbox');
    await stop();
    await settlement.idle();
    // Every reading sealed while settlement refused them is there, in one unbroken chain.
    const stored = (await settlement.ledger.readings('m-retry')).length;
    expect(stored).toBeGreaterThanOrEqual(sealedWhileRefused + 4);
    await expectWholeChain(settlement, 'm-retry', stored);
    expect(gw.stats().rejected).toBe(0);
  });

  it('sets envelopes refused for good aside, lists them in gtx gateway status, and requeues them while the gateway runs', { timeout: 60_000 }, async () => {
    // Auth off: a gateway that was never enrolled reaches settlement, which refuses it (unknown_gateway).
    const { dir, settlement, sim } = await setup({ auth: false });
    const config = writeGatewayToml(dir, { id: 'gw-dead', meter: 'm-dead', meterPort: sim.port, url: settlement.brokerUrl });
    const cfg = loadGatewayConfig(config);
    const { gw } = await run(cfg, { log: testLog('gateway') });
    await waitFor(() => gw.stats().rejected >= 3, 'envelopes refused for good');
    expect(gw.stats().deferred).toBe(0);

    const st = gtx(['gateway', 'status', '--config', config]);
    expect(st.status, st.stderr).toBe(0);
    expect(Number(/dead letters \(refused for good\): (\d+)/.exec(st.stdout)?.[1])).toBeGreaterThanOrEqual(3);
    expect(st.stdout).toContain(`gtx gateway requeue --config ${config}`);
    // One line per letter: short id, readings, meter with its seq range, reason, time, detail.
    expect(st.stdout).toMatch(/^ {4}[0-9a-f]{12} {2}\d+ reading\(s\) {2}m-dead seq 1(\.\.\d+)? {2}unknown_gateway {2}\d{4}-\d\d-\d\dT\S+Z {2}gateway gw-dead is not registered$/m);

    // The installer enrolls it; new envelopes go in (after settlement's short key cache), then the old ones.
    await enrollGatewayConfig(settlement, cfg);
    await waitFor(() => gw.stats().acked > 0, 'the first acknowledgement after enrolling', 20_000);
    expect(gtx(['gateway', 'requeue', '--config', config, '--reason', 'broken_chain']).stdout).toMatch(/^requeued 0 dead letter\(s\) refused for broken_chain/);
    let refused = gw.stats().rejected;
    const rq = gtx(['gateway', 'requeue', '--config', config]);
    expect(rq.status, rq.stderr).toBe(0);
    expect(rq.stdout).toMatch(/^requeued [1-9]\d* dead letter\(s\); \d+ envelope\(s\) now in the outbox/);
    await waitFor(async () => {
      // An envelope refused just before settlement's key cache turned over can land after the requeue.
      if (gw.stats().rejected > refused) {
        refused = gw.stats().rejected;
        gtx(['gateway', 'requeue', '--config', config]);
      }
      const rs = await settlement.ledger.readings('m-dead');
      return rs.length >= 8 && rs.every((r, i) => r.seq === i + 1);
    }, 'the requeued readings filling the chain from seq 1', 20_000);
    await settlement.idle();
    const rs = await settlement.ledger.readings('m-dead');
    for (let i = 1; i < rs.length; i++) expect(rs[i]!.prev).toBe(rs[i - 1]!.hash);
  });

  it('answers --help and refuses bad input with exit code 2', { timeout: 60_000 }, () => {
    for (const args of [['gateway', '--help'], ['gateway', 'requeue', '--help']]) {
      const r = gtx(args);
      expect(r.status, args.join(' ')).toBe(0);
      expect(r.stdout).toContain('gtx gateway requeue [--config FILE] [--reason REASON]');
    }
    const cases: Array<[string[], RegExp]> = [
      [['gateway', 'requeue'], /^gtx: no gateway.toml in this folder: run gtx gateway init here, or pass --config FILE$/m],
      [['gateway', 'requeue', '--config', 'x.toml', '--reason', 'nope'], /^gtx: --reason "nope" is not a refusal reason/m],
      [['gateway', 'status', '--config', '/nonexistent/gw.toml'], /^gtx: \/nonexistent\/gw\.toml: /m],
    ];
    for (const [args, message] of cases) {
      const r = gtx(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.split('\n')[0]).toMatch(message);
      expect(r.stderr).not.toMatch(/at .*\.ts:\d+/);
    }
  });

  it('holds readings while its clock is before the release floor and seals them with their read time once it is set', { timeout: 60_000 }, async () => {
    const { dir, settlement, sim } = await setup({ auth: false });
    const config = writeGatewayToml(dir, { id: 'gw-clock', meter: 'm-clock', meterPort: sim.port, url: settlement.brokerUrl });
    const cfg = loadGatewayConfig(config);
    await enrollGatewayConfig(settlement, cfg);
    // Booted without a real-time clock: 1970 until "NTP" sets it.
    let clockSet = false;
    const wall = () => (clockSet ? Date.now() : Date.now() - Date.parse('2026-01-01T00:00:00Z'));
    const status = await mqtt.connectAsync(settlement.brokerUrl, { clientId: 'gtx-test-status-watch' });
    cleanups.push(() => status.endAsync());
    const seen: GatewayStatus[] = [];
    status.on('message', (_t, p) => seen.push(JSON.parse(p.toString()) as GatewayStatus));
    await status.subscribeAsync(topics.status('gw-clock'));
    const { log, warnings } = capturedLog();
    const { gw, stop } = await run(cfg, { log, now: wall });

    await waitFor(() => gw.stats().heldReadings >= 6, 'readings held while the clock is implausible');
    expect(gw.stats().sealed).toBe(0);
    expect(warnings(/clock implausible/)).toHaveLength(1);
    expect(warnings(/clock implausible/)[0]).toMatchObject({ reason: 'before_release_floor', clock: expect.stringMatching(/^1970-/) });
    await waitFor(() => seen.some((s) => s.state === 'online' && s.clock === 'before_release_floor'), 'the retained status saying the clock is implausible');
    await waitFor(() => /clock: IMPLAUSIBLE, not sealing readings: the gateway's clock read 1970-\S+, before the release floor 2026-11-01T00:00:00.000Z; \d+ reading\(s\) held/.test(gtx(['gateway', 'status', '--config', config]).stdout), 'gtx gateway status saying so');

    const held = gw.stats().heldReadings;
    const setAt = Date.now(); // every held reading was read before this instant
    clockSet = true;
    await waitFor(async () => (await settlement.ledger.readings('m-clock')).length >= held + 2, 'held and new readings in the ledger', 20_000);
    await waitFor(() => seen.some((s) => s.state === 'online' && s.clock === 'ok'), 'the retained status saying the clock is fine again');
    await stop();
    await settlement.idle();
    const rs = await settlement.ledger.readings('m-clock');
    const times = rs.map((r) => Date.parse(r.ts));
    // Stamped with the time they were read (on the real clock), in order, none in 1970.
    for (let i = 1; i < times.length; i++) expect(times[i]!).toBeGreaterThan(times[i - 1]!);
    expect(times.slice(0, held).every((t) => t <= setAt && t > setAt - 120_000)).toBe(true);
    expect(gw.stats().droppedReadings).toBe(0);
    // A resend after a slow ack is answered duplicate; nothing else is refused.
    expect((await settlement.ledger.rejections(100)).map((r) => r.reason).filter((r) => r !== 'duplicate')).toEqual([]);
    expect(gtx(['gateway', 'status', '--config', config]).stdout).toMatch(/^ {2}clock: ok$/m);
  });
});
