import { listDefinitions } from '../../devices/catalog.ts';
import { createDecoder } from '../../devices/decoder.ts';
import { BusClient, BusPoller } from '../../gateway/bus.ts';
import { describePower, meterReading, readMeterSettings, type MeterSettings } from './meter-settings.ts';
import type { NodeAPI, NodeDef, NodeInstance, NodeMessage } from './red.ts';

/** The catalog for the editor's model select: id, vendor and model of each definition. */
export function catalogModels(): Array<{ id: string; vendor: string; model: string }> {
  return listDefinitions().map((d) => ({ id: d.id, vendor: d.vendor, model: d.model }));
}

/**
 * `gtx-meter`: reads one catalog meter over Modbus TCP or RTU with the gateway's own bus code
 * (BusPoller: per-meter schedule, backoff while it does not answer, reconnects), and emits each
 * reading. With interval 0 it reads once per incoming message instead (an installer's check).
 */
export default function register(RED: NodeAPI): void {
  RED.httpAdmin.get('/gtx/models', RED.auth.needsPermission('gtx-meter.read'), (_req, res) => res.json(catalogModels()));

  RED.nodes.registerType('gtx-meter', function (this: NodeInstance, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    let settings: MeterSettings;
    try {
      settings = readMeterSettings(def);
    } catch (e) {
      node.status({ fill: 'red', shape: 'ring', text: 'settings' });
      node.error(`gtx-meter: ${(e as Error).message}`);
      node.on('input', (_msg, _send, done) => done(`gtx-meter: ${(e as Error).message}`));
      return;
    }
    const { bus, meter, intervalMs } = settings;
    const failed = (message: string, msg: NodeMessage = {}) => {
      node.status({ fill: 'red', shape: 'ring', text: message.length > 60 ? `${message.slice(0, 57)}…` : message });
      node.error(message, { ...msg, payload: { meter: meter.id, error: message } });
    };

    if (intervalMs > 0) {
      node.status({ fill: 'grey', shape: 'ring', text: `polling every ${intervalMs / 1000} s` });
      const poller = new BusPoller(bus, [meter], {
        defaultIntervalMs: intervalMs,
        onReading: (_m, values) => {
          const r = meterReading(meter.id, Date.now(), values);
          node.status({ fill: 'green', shape: 'dot', text: describePower(r) });
          node.send({ topic: meter.id, payload: r });
        },
        // Every failed attempt, not only the first: the poller already spaces them out (backoff).
        onFailure: (_m, err) => failed(err.message),
        onRecovery: () => node.log(`meter ${meter.id} answers again`),
      });
      poller.start();
      node.on('input', (_msg, _send, done) => done(`gtx-meter ${meter.id} polls every ${intervalMs / 1000} s by itself; set its interval to 0 to read on each message`));
      node.on('close', (_removed, done) => {
        poller.stop().then(done, done);
      });
      return;
    }

    // Read on input: one connection kept between messages, reads taken one at a time.
    const io = new BusClient(bus);
    const decoder = createDecoder(meter.definition);
    let queue: Promise<void> = Promise.resolve();
    node.status({ fill: 'grey', shape: 'ring', text: 'reads on input' });
    node.on('input', (msg, send, done) => {
      queue = queue.then(async () => {
        try {
          const values = await decoder.read((fc, address, count) => io.read(meter.unitId, meter.timeoutMs, fc, address, count));
          const r = meterReading(meter.id, Date.now(), values);
          node.status({ fill: 'green', shape: 'dot', text: describePower(r) });
          send({ ...msg, topic: meter.id, payload: r });
          done();
        } catch (e) {
          const message = `meter ${meter.id} (${meter.definition.model}) at ${io.where} unit ${meter.unitId} did not answer: ${(e as Error).message}; check the wiring, unit id, ${bus.kind === 'rtu' ? 'baud rate, parity' : 'host, port'} and model`;
          node.status({ fill: 'red', shape: 'ring', text: 'no answer' });
          // done(err, msg) reports it once, to the log and to Catch nodes, with the message.
          done(message);
        }
      });
    });
    node.on('close', (_removed, done) => {
      queue.then(() => io.close()).then(done, done);
    });
  });
}
