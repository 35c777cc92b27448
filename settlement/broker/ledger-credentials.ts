import type { Ledger } from '../ledger/ledger.ts';
import { SETTLEMENT_USERNAME } from './acl.ts';
import type { CredentialRecord, CredentialStore } from './credentials.ts';

/**
 * MQTT logins backed by the registry: a gateway logs in with its id and the secret issued at
 * enrollment (only its scrypt hash is stored); the settlement with its own secret.
 */
export class LedgerCredentialStore implements CredentialStore {
  constructor(
    private readonly ledger: Ledger,
    private readonly settlementSecretHash: string,
  ) {}

  async lookup(username: string): Promise<CredentialRecord | undefined> {
    if (username === SETTLEMENT_USERNAME) return { kind: 'settlement', secretHash: this.settlementSecretHash };
    // A stored gateway under a reserved name (an older release enrolled it) is returned as
    // what it is; the broker's login refuses it (CONNACK 5), it never becomes the settlement.
    const gw = await this.ledger.getGateway(username);
    if (!gw?.mqttSecretHash) return undefined;
    return { kind: 'gateway', gatewayId: gw.id, status: gw.status, secretHash: gw.mqttSecretHash };
  }
}
