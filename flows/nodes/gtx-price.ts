import { randomBytes } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { savedCredentials } from '../../gateway/enroll.ts';
import { isValidId, parsePriceSignal, topics } from '../../protocol/index.ts';
import { openGatewaySession, type GatewaySession } from './gateway-session.ts';
import { gtxSettingsOf } from './gtx-settings.ts';
import { NodeSettingsError, requiredString } from './node-settings.ts';
import type { NodeAPI, NodeDef, NodeInstance } from './red.ts';

/**
 * `gtx-price`: the market's price signal from its retained MQTT topic (protocol/topics), as it
 * changes. Each message is checked against the protocol's schema; a malformed one is a warning.
 */
export default function register(RED: NodeAPI): void {
  RED.nodes.registerType('gtx-price', function (this: NodeInstance, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    let client: MqttClient | undefined;
    let session: GatewaySession | undefined;
    let closed = false;
    try {
      const market = requiredString(def, 'market', 'the market id, e.g. thailand_central');
      if (!isValidId(market)) throw new NodeSettingsError(`market must be a market id (letters, digits, . _ -), got ${JSON.stringify(market)}`);
      const everyUpdate = def.everyUpdate === true || def.everyUpdate === 'true';
      const s = gtxSettingsOf(RED, def);
      const topic = topics.price(market);
      let lastPrice: string | undefined;
      const onPayload = (payload: Buffer) => {
        const signal = parsePriceSignal(payload, market);
        if (typeof signal === 'string') {
          node.warn(`gtx-price: ignored a message on ${topic}: ${signal}`);
          return;
        }
        if (!everyUpdate && signal.price === lastPrice) return;
        lastPrice = signal.price;
        node.status({ fill: 'green', shape: 'dot', text: `${signal.price} ${signal.currency}/kWh` });
        node.send({ topic: market, payload: signal });
      };
      node.status({ fill: 'grey', shape: 'ring', text: 'connecting' });
      if (!s.username && s.dataDir && savedCredentials(s.dataDir)) {
        // An enrolled gateway's data dir and no login of its own: hear the price on the gateway's
        // connection (shared with gtx-publish), since the settlement's broker admits the gateway's
        // login only with the gateway's client id.
        openGatewaySession(s, { log: (m) => node.log(m), warn: (m) => node.warn(m), error: (m) => node.error(m) }).then(
          (sess) => {
            if (closed) return void sess.release();
            session = sess;
            sess.listen(topic, onPayload);
            node.status({ fill: 'green', shape: 'ring', text: `waiting for ${market} (as gateway ${sess.gateway})` });
          },
          (e: unknown) => {
            node.status({ fill: 'red', shape: 'ring', text: 'settings' });
            node.error(`gtx-price: ${(e as Error).message}`);
          },
        );
      } else {
        const url = s.brokerUrl ?? (s.dataDir ? savedCredentials(s.dataDir)?.url : undefined);
        if (!url) throw new NodeSettingsError('the GridTokenX settings name no broker URL (and no enrolled gateway data dir to take it from)');
        // A client id of its own: the gateway's is bound to the gateway's login, and a second
        // connection with it would push gtx-publish off the broker.
        const c = mqtt.connect(url, {
          clientId: `gtx-nodered-price-${randomBytes(6).toString('hex')}`,
          ...(s.username ? { username: s.username, password: s.password } : {}),
          reconnectPeriod: 2_000,
          connectTimeout: 5_000,
        });
        client = c;
        c.on('connect', () => {
          node.status({ fill: 'green', shape: 'ring', text: lastPrice ? `${lastPrice}` : `waiting for ${market}` });
          c.subscribe(topic, { qos: 1 }, (err) => err && node.error(`gtx-price: cannot subscribe to ${topic}: ${err.message}`));
        });
        c.on('error', (err) => node.status({ fill: 'red', shape: 'ring', text: err.message.slice(0, 60) }));
        c.on('close', () => node.status({ fill: 'red', shape: 'ring', text: 'disconnected' }));
        c.on('message', (t, payload) => {
          if (t === topic) onPayload(payload);
        });
      }
    } catch (e) {
      node.status({ fill: 'red', shape: 'ring', text: 'settings' });
      node.error(`gtx-price: ${(e as Error).message}`);
    }
    node.on('close', (_removed, done) => {
      closed = true;
      const stopping: Array<Promise<void>> = [];
      if (session) stopping.push(session.release());
      if (client) stopping.push(new Promise<void>((r) => client!.end(true, {}, () => r())));
      void Promise.all(stopping).then(() => done(), () => done());
    });
  });
}
