import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { isReservedId, RESERVED_ID_PREFIX } from '../../protocol/index.ts';
import { removeFromPasswordFile, upsertPasswordFile } from './mosquitto.ts';

/**
 * Keeps an external Mosquitto's password file in step with the registry: a gateway's line is
 * written when its secret is issued (the only moment the plaintext exists) and removed when
 * it is revoked; then Mosquitto is told to re-read it (SIGHUP via its pid file).
 */
export class MosquittoPasswordSync {
  constructor(
    private readonly opts: { passwordFile: string; pidFile?: string; log: Logger },
  ) {}

  issued(gateway: string, secret: string): void {
    this.refuseReserved(gateway, 'issue a secret for');
    this.rewrite((cur) => upsertPasswordFile(cur, [{ username: gateway, secret }]));
    this.opts.log.info({ gateway, passwordFile: this.opts.passwordFile }, 'gateway added to the Mosquitto password file');
  }

  revoked(gateway: string): void {
    this.refuseReserved(gateway, 'revoke');
    this.rewrite((cur) => removeFromPasswordFile(cur, [gateway]));
    this.opts.log.info({ gateway, passwordFile: this.opts.passwordFile }, 'gateway removed from the Mosquitto password file');
  }

  /**
   * The settlement's own lines (`gtx-settlement`, `gtx-settlement-<n>`) are the operator's:
   * replacing one would lock the settlement out, removing one would cut it off at the reload.
   */
  private refuseReserved(username: string, what: string): void {
    if (!isReservedId(username)) return;
    const err = new Error(
      `refused to ${what} "${username}" in the Mosquitto password file ${this.opts.passwordFile}: names starting with ${RESERVED_ID_PREFIX} belong to the settlement, not to a gateway`,
    );
    this.opts.log.error({ gateway: username, passwordFile: this.opts.passwordFile, reason: 'reserved name' }, 'Mosquitto password file change refused');
    throw err;
  }

  private rewrite(change: (current: string) => string): void {
    const file = this.opts.passwordFile;
    const current = existsSync(file) ? readFileSync(file, 'utf8') : '';
    // Write-then-rename: Mosquitto never reads a half-written file.
    const tmp = `${file}.tmp-${process.pid}`;
    writeFileSync(tmp, change(current), { mode: 0o640 });
    renameSync(tmp, file);
    this.reload();
  }

  private reload(): void {
    const pidFile = this.opts.pidFile;
    if (!pidFile) return;
    try {
      process.kill(Number(readFileSync(pidFile, 'utf8').trim()), 'SIGHUP');
    } catch (e) {
      this.opts.log.warn({ pidFile, err: (e as Error).message }, 'could not signal Mosquitto to reload its password file; reload it by hand');
    }
  }
}
