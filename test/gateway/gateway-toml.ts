import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

export const GTX = join(import.meta.dirname, '../../bin/gtx.js');

/** Runs the real CLI (`node bin/gtx.js …`) and returns its exit code and output. */
export function gtx(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [GTX, ...args], { encoding: 'utf8', env: { ...process.env, GTX_LOG_LEVEL: 'warn' }, timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * A gateway config file for one simulated sdm120 meter with fast polling, so the CLI
 * (`gtx gateway status|requeue --config`) and an in-process gateway share one outbox.
 */
export function writeGatewayToml(dir: string, o: { id: string; meter: string; meterPort: number; url?: string; ackTimeoutS?: number }): string {
  const file = join(dir, `${o.id}.toml`);
  writeFileSync(
    file,
    `[gateway]
id = "${o.id}"
data_dir = "${o.id}-data"
poll_interval_s = 0.1
batch_max_readings = 4
batch_max_age_s = 0.3

[mqtt]
${o.url ? `url = "${o.url}"` : '# url unset: the enrolled broker'}
ack_timeout_s = ${o.ackTimeoutS ?? 2}
max_in_flight = 8

[[meters]]
id = "${o.meter}"
model = "sdm120"
host = "127.0.0.1"
port = ${o.meterPort}
role = "bidirectional"
energy_source = "Solar"
`,
  );
  return file;
}
