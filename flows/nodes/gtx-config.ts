import { NodeSettingsError } from './node-settings.ts';
import type { NodeAPI, NodeDef, NodeInstance } from './red.ts';
import { readGtxSettings, type GtxConfigNode, type GtxCredentialKey } from './gtx-settings.ts';

/** `gtx-config`: the broker, settlement API and gateway data dir the other gtx nodes share. */
export default function register(RED: NodeAPI): void {
  RED.nodes.registerType(
    'gtx-config',
    function (this: NodeInstance, def: NodeDef) {
      RED.nodes.createNode(this, def);
      const node = this as GtxConfigNode & { credentials?: Record<GtxCredentialKey, string | undefined> };
      try {
        node.gtx = readGtxSettings(def, node.credentials ?? {});
      } catch (e) {
        // Kept, not thrown: the nodes that use it report it on their own status, where it is seen.
        node.gtx = e instanceof NodeSettingsError ? e : new NodeSettingsError(String(e));
      }
    },
    { credentials: { username: { type: 'text' }, password: { type: 'password' }, apiKey: { type: 'password' } } },
  );
}
