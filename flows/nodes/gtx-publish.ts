import type { Sample } from '../../gateway/outbox.ts';
import { openGatewaySession, type GatewaySession } from './gateway-session.ts';
import { gtxSettingsOf } from './gtx-settings.ts';
import { numberIn } from './node-settings.ts';
import { ReadingInputError, sampleFrom } from './reading-input.ts';
import type { NodeAPI, NodeDef, NodeInstance } from './red.ts';

/** How often the status line (outbox depth, acked) is refreshed. */
const STATUS_EVERY_MS = 1_000;

/**
 * `gtx-publish`: signs readings (from gtx-meter) into the gateway's outbox and publishes them
 * until settlement acknowledges each envelope: the same store-and-forward as `gtx gateway run`,
 * with the key and MQTT login `gtx gateway init`/`enroll` left in the data dir. Readings wait
 * for a batch (max readings or max age) as the gateway's do: one signature and one fsync each.
 */
export default function register(RED: NodeAPI): void {
  RED.nodes.registerType('gtx-publish', function (this: NodeInstance, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    let session: GatewaySession | undefined;
    let pending: Sample[] = [];
    let oldestAt = 0;
    let timer: NodeJS.Timeout | undefined;
    let closed = false;
    let batchMax = 64;
    let batchAgeMs = 10_000;

    const seal = () => {
      if (!session || pending.length === 0) return;
      const batch = pending;
      pending = [];
      try {
        session.seal(batch);
      } catch (e) {
        node.error(`gtx-publish: could not store ${batch.length} reading(s) in the outbox: ${(e as Error).message}`);
      }
    };
    const showStatus = () => {
      if (!session) return;
      const depth = session.depth();
      node.status({
        fill: session.connected() ? (depth > 100 ? 'yellow' : 'green') : 'red',
        shape: session.connected() ? 'dot' : 'ring',
        text: `${session.connected() ? '' : 'broker down; '}outbox ${depth}, acked ${session.acked()}${pending.length ? `, batching ${pending.length}` : ''}`,
      });
    };
    const fail = (message: string) => {
      node.status({ fill: 'red', shape: 'ring', text: message.length > 60 ? `${message.slice(0, 57)}…` : message });
      node.error(`gtx-publish: ${message}`);
    };

    let ready: Promise<void>;
    try {
      batchMax = numberIn(def, 'batchMax', 1, 256, 64);
      batchAgeMs = Math.round(numberIn(def, 'batchAge', 0, 3600, 10, false) * 1000);
      const settings = gtxSettingsOf(RED, def);
      node.status({ fill: 'grey', shape: 'ring', text: 'opening outbox' });
      ready = openGatewaySession(settings, { log: (m) => node.log(m), warn: (m) => node.warn(m), error: (m) => node.error(m) }).then(
        async (s) => {
          if (closed) return s.release();
          session = s;
          node.log(`gateway ${s.gateway} publishing to ${s.brokerUrl}`);
          timer = setInterval(() => {
            if (pending.length > 0 && performance.now() - oldestAt >= batchAgeMs) seal();
            showStatus();
          }, Math.min(STATUS_EVERY_MS, Math.max(batchAgeMs, 100)));
          showStatus();
        },
        (e: Error) => fail(e.message),
      );
    } catch (e) {
      fail((e as Error).message);
      ready = Promise.resolve();
    }

    node.on('input', (msg, _send, done) => {
      if (!session) {
        done('gtx-publish is not ready (see its status): the reading was not stored');
        return;
      }
      let sample: Sample;
      try {
        const s = session;
        // Waiting samples count as the meter's last reading too: a replay within one batch is caught.
        const last = (meter: string) => Math.max(s.lastReadingMs(meter) ?? -Infinity, ...pending.filter((p) => p.meter === meter).map((p) => p.tsMs));
        sample = sampleFrom(msg.payload, Date.now(), (m) => {
          const v = last(m);
          return Number.isFinite(v) ? v : undefined;
        });
      } catch (e) {
        done(e instanceof ReadingInputError ? e.message : `gtx-publish: ${(e as Error).message}`);
        return;
      }
      if (pending.length === 0) oldestAt = performance.now();
      pending.push(sample);
      if (pending.length >= batchMax || batchAgeMs === 0) seal();
      showStatus();
      done();
    });

    node.on('close', (_removed, done) => {
      closed = true;
      clearInterval(timer);
      ready
        .then(async () => {
          seal(); // what was read is kept, not dropped: it goes out on the next start
          await session?.release();
        })
        .then(done, done);
    });
  });
}
