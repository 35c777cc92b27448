import { createServer, type Server } from 'node:http';
import type { MeterState } from './bus.ts';
import type { OutboxFill } from './main.ts';

/**
 * The gateway's local status page (`[gateway] status_listen`, off by default): read-only, on
 * node:http rather than a framework so the gateway stays small. `/` is a page a person reads,
 * `/status.json` the same for scripts, `/metrics` Prometheus text.
 */
export interface StatusSnapshot {
  gateway: string;
  broker: { url: string; connected: boolean };
  lastAckMs: number | null;
  outbox: { envelopes: number } & OutboxFill;
  polls: number;
  pollErrors: number;
  acked: number;
  buses: Array<{ name: string; url: string }>;
  meters: MeterState[];
}

export async function startStatusServer(host: string, port: number, snapshot: () => StatusSnapshot): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('read-only\n');
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    const s = snapshot();
    if (path === '/status.json') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(s, null, 2));
    } else if (path === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(metrics(s));
    } else if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page(s));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /, /status.json or /metrics\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  const bound = typeof addr === 'object' && addr ? addr.port : port;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function metrics(s: StatusSnapshot): string {
  const lines = [
    '# HELP gtx_gateway_outbox_envelopes Signed envelopes waiting for settlement',
    '# TYPE gtx_gateway_outbox_envelopes gauge',
    `gtx_gateway_outbox_envelopes ${s.outbox.envelopes}`,
    '# HELP gtx_gateway_outbox_bytes Outbox size on disk',
    '# TYPE gtx_gateway_outbox_bytes gauge',
    `gtx_gateway_outbox_bytes ${s.outbox.bytes}`,
    '# HELP gtx_gateway_outbox_cap_bytes Outbox size cap ([gateway] outbox_max_mib)',
    '# TYPE gtx_gateway_outbox_cap_bytes gauge',
    `gtx_gateway_outbox_cap_bytes ${s.outbox.capBytes}`,
    '# HELP gtx_gateway_readings_not_stored_total Readings read while the outbox was full',
    '# TYPE gtx_gateway_readings_not_stored_total counter',
    `gtx_gateway_readings_not_stored_total ${s.outbox.notStored}`,
    '# HELP gtx_gateway_broker_connected 1 while connected to the broker',
    '# TYPE gtx_gateway_broker_connected gauge',
    `gtx_gateway_broker_connected ${s.broker.connected ? 1 : 0}`,
    '# HELP gtx_gateway_acked_total Envelopes acknowledged by settlement since start',
    '# TYPE gtx_gateway_acked_total counter',
    `gtx_gateway_acked_total ${s.acked}`,
    '# HELP gtx_gateway_polls_total Meter readings taken since start',
    '# TYPE gtx_gateway_polls_total counter',
    `gtx_gateway_polls_total ${s.polls}`,
    '# HELP gtx_gateway_poll_errors_total Meter reads that failed since start',
    '# TYPE gtx_gateway_poll_errors_total counter',
    `gtx_gateway_poll_errors_total ${s.pollErrors}`,
    '# HELP gtx_gateway_meter_up 1 when the meter answered its last read',
    '# TYPE gtx_gateway_meter_up gauge',
    ...s.meters.map((m) => `gtx_gateway_meter_up{meter="${m.id}",bus="${m.bus.replace(/["\\\n]/g, '_')}"} ${m.state === 'ok' ? 1 : 0}`),
  ];
  return `${lines.join('\n')}\n`;
}

const esc = (x: unknown) => String(x).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const iso = (ms: number | null) => (ms === null ? 'never' : new Date(ms).toISOString().replace('.000', ''));

function page(s: StatusSnapshot): string {
  const pct = ((s.outbox.bytes / s.outbox.capBytes) * 100).toFixed(1);
  const meterRows = s.meters
    .map((m) => {
      const v = m.lastValues;
      const values = v ? `${(v.importWh / 1000).toFixed(3)} kWh in, ${(v.exportWh / 1000).toFixed(3)} kWh out, ${v.powerW} W${v.voltageMilliV === undefined ? '' : `, ${(v.voltageMilliV / 1000).toFixed(1)} V`}` : '—';
      return `<tr class="${m.state}"><td>${esc(m.id)}</td><td>${esc(m.bus)} #${m.unitId}</td><td>${esc(m.model)}</td><td>${m.state}</td><td>${esc(iso(m.lastReadAtMs))}</td><td>${esc(values)}</td><td>${esc(m.lastError ?? '')}</td></tr>`;
    })
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="10"><title>gateway ${esc(s.gateway)}</title>
<style>body{font-family:system-ui,sans-serif;margin:1rem}table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem;text-align:left;font-size:.9rem}
.failing td{color:#a00}.warn{color:#a60;font-weight:bold}</style></head>
<body><h1>Gateway ${esc(s.gateway)}</h1>
<p>Broker ${esc(s.broker.url)}: <b>${s.broker.connected ? 'connected' : 'not connected'}</b> · last ack ${esc(iso(s.lastAckMs))}</p>
<p class="${s.outbox.state === 'ok' ? '' : 'warn'}">Outbox: ${s.outbox.envelopes} envelope(s) waiting, ${(s.outbox.bytes / 1048576).toFixed(1)} MiB of ${(s.outbox.capBytes / 1048576).toFixed(0)} MiB (${pct} %)${s.outbox.state === 'full' ? ' — FULL: new readings are not stored' : s.outbox.state === 'near' ? ' — nearly full' : ''}${s.outbox.notStored ? ` · ${s.outbox.notStored} reading(s) not stored` : ''}</p>
<h2>Buses</h2><ul>${s.buses.map((b) => `<li>${esc(b.name)}: ${esc(b.url)}</li>`).join('')}</ul>
<h2>Meters</h2><table><tr><th>meter</th><th>bus</th><th>model</th><th>state</th><th>last read</th><th>last values</th><th>last error</th></tr>
${meterRows}</table>
<p>Polls ${s.polls}, errors ${s.pollErrors}, acknowledged ${s.acked}. Read-only; <a href="/status.json">JSON</a>, <a href="/metrics">metrics</a>.</p>
</body></html>
`;
}
