import { join } from 'node:path';
import { gatewayId, type GatewayId } from '../../protocol/index.ts';
import { absolutePath, NodeSettingsError, optionalString, urlWithScheme } from './node-settings.ts';
import type { Credentials, NodeAPI, NodeDef, NodeInstance } from './red.ts';

/** What a gtx-config node holds, checked. Every field is optional: each node says what it needs. */
export interface GtxSettings {
  /** Set on purpose; otherwise the broker `gtx gateway enroll` saved in the data dir. */
  brokerUrl?: string;
  username?: string;
  password?: string;
  /** The settlement's HTTP API, e.g. http://192.168.1.10:8080. */
  apiUrl?: string;
  apiKey?: string;
  /** Where `gtx gateway init` put the key, outbox and MQTT login. */
  dataDir?: string;
  keyFile?: string;
  /** The enrolled gateway id, when `gtx gateway init --id` chose one; else derived from the key. */
  gatewayId?: GatewayId;
}

export type GtxCredentialKey = 'username' | 'password' | 'apiKey';

export const BROKER_SCHEMES = ['mqtt:', 'mqtts:', 'ws:', 'wss:'] as const;

/** Reads and checks a gtx-config node's properties and credentials. */
export function readGtxSettings(def: NodeDef, creds: Credentials<GtxCredentialKey>): GtxSettings {
  const s: GtxSettings = {};
  const broker = optionalString(def, 'brokerUrl');
  if (broker) s.brokerUrl = urlWithScheme(broker, 'broker URL', BROKER_SCHEMES);
  const api = optionalString(def, 'apiUrl');
  if (api) s.apiUrl = urlWithScheme(api, 'settlement API URL', ['http:', 'https:']);
  const dataDir = optionalString(def, 'dataDir');
  if (dataDir) s.dataDir = absolutePath(dataDir, 'data dir');
  const keyFile = optionalString(def, 'keyFile');
  if (keyFile) s.keyFile = absolutePath(keyFile, 'key file');
  else if (s.dataDir) s.keyFile = join(s.dataDir, 'gateway.key');
  const gw = optionalString(def, 'gatewayId');
  if (gw) {
    try {
      s.gatewayId = gatewayId(gw);
    } catch (e) {
      throw new NodeSettingsError(`gateway id: ${(e as Error).message}`);
    }
  }
  const c = creds as Record<string, unknown>;
  for (const k of ['username', 'password', 'apiKey'] as const) {
    const v = optionalString(c, k, 4096);
    if (v !== undefined) s[k] = v;
  }
  return s;
}

/** A gtx-config node as the other nodes find it. */
export interface GtxConfigNode extends NodeInstance {
  /** The checked settings, or why they are wrong. */
  gtx: GtxSettings | NodeSettingsError;
}

/** The config node `def.config` names, checked; throws a NodeSettingsError a user can act on. */
export function gtxSettingsOf(RED: NodeAPI, def: NodeDef): GtxSettings {
  const id = def.config;
  const node = typeof id === 'string' && id !== '' ? (RED.nodes.getNode(id) as GtxConfigNode | null) : null;
  if (!node || node.type !== 'gtx-config' || !('gtx' in node)) throw new NodeSettingsError('no GridTokenX settings (gtx-config) selected: open the node and pick or add one');
  if (node.gtx instanceof NodeSettingsError) throw new NodeSettingsError(`GridTokenX settings "${node.name || node.id}": ${node.gtx.message}`);
  return node.gtx;
}
