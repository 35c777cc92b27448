import { randomBytes } from 'node:crypto';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import mqtt, { type MqttClient } from 'mqtt';
import { savedCredentials } from '../../gateway/enroll.ts';
import { isValidId, PriceSignalMessageSchema, topics, type PriceSignalMessage } from '../../protocol/index.ts';
import { gtxSettingsOf } from './gtx-settings.ts';
import { NodeSettingsError, requiredString } from './node-settings.ts';
import type { NodeAPI, NodeDef, NodeInstance } from './red.ts';

const priceCheck = TypeCompiler.Compile(PriceSignalMessageSchema);
/** A price signal is a few hundred bytes; anything far larger on the topic is not one. */
const MAX_MESSAGE_BYTES = 16 * 1024;

/** The price signal in a message from the price topic of `market`, or why it is not one. */
export function parsePriceSignal(payload: Buffer, market: string): PriceSignalMessage | string {
  if (payload.length > MAX_MESSAGE_BYTES) return `a ${payload.length}-byte message is not a price signal`;
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    return 'not JSON';
  }
  if (!priceCheck.Check(value)) {
    const first = priceCheck.Errors(value).First();
    return `not a price signal (${first ? `${first.path || '/'}: ${first.message}` : 'schema'})`;
  }
  // The topic says which market; a message claiming another one was put there by someone else.
  if (value.market !== market) return `a signal for market ${JSON.stringify(value.market)} on ${market}'s topic`;
  return value;
}

/**
 * `gtx-price`: the market's price signal from its retained MQTT topic (protocol/topics), as it
 * changes. Each message is checked against the protocol's schema; a malformed one is a warning.
 */
export default function register(RED: NodeAPI): void {
  RED.nodes.registerType('gtx-price', function (this: NodeInstance, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    let client: MqttClient | undefined;
    try {
      const market = requiredString(def, 'market', 'the market id, e.g. thailand_central');
      if (!isValidId(market)) throw new NodeSettingsError(`market must be a market id (letters, digits, . _ -), got ${JSON.stringify(market)}`);
      const everyUpdate = def.everyUpdate === true || def.everyUpdate === 'true';
      const s = gtxSettingsOf(RED, def);
      const url = s.brokerUrl ?? (s.dataDir ? savedCredentials(s.dataDir)?.url : undefined);
      if (!url) throw new NodeSettingsError('the GridTokenX settings name no broker URL (and no enrolled gateway data dir to take it from)');
      const topic = topics.price(market);
      let lastPrice: string | undefined;
      node.status({ fill: 'grey', shape: 'ring', text: 'connecting' });
      // A client id of its own: the gateway's is bound to the gateway's login, and a second
      // connection with it would push gtx-publish off the broker.
      client = mqtt.connect(url, {
        clientId: `gtx-nodered-price-${randomBytes(6).toString('hex')}`,
        ...(s.username ? { username: s.username, password: s.password } : {}),
        reconnectPeriod: 2_000,
        connectTimeout: 5_000,
      });
      client.on('connect', () => {
        node.status({ fill: 'green', shape: 'ring', text: lastPrice ? `${lastPrice}` : `waiting for ${market}` });
        client!.subscribe(topic, { qos: 1 }, (err) => err && node.error(`gtx-price: cannot subscribe to ${topic}: ${err.message}`));
      });
      client.on('error', (err) => node.status({ fill: 'red', shape: 'ring', text: err.message.slice(0, 60) }));
      client.on('close', () => node.status({ fill: 'red', shape: 'ring', text: 'disconnected' }));
      client.on('message', (t, payload) => {
        if (t !== topic) return;
        const signal = parsePriceSignal(payload, market);
        if (typeof signal === 'string') {
          node.warn(`gtx-price: ignored a message on ${topic}: ${signal}`);
          return;
        }
        if (!everyUpdate && signal.price === lastPrice) return;
        lastPrice = signal.price;
        node.status({ fill: 'green', shape: 'dot', text: `${signal.price} ${signal.currency}/kWh` });
        node.send({ topic: market, payload: signal });
      });
    } catch (e) {
      node.status({ fill: 'red', shape: 'ring', text: 'settings' });
      node.error(`gtx-price: ${(e as Error).message}`);
    }
    node.on('close', (_removed, done) => {
      if (!client) return done();
      client.end(true, {}, () => done());
    });
  });
}
