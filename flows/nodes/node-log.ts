import { pino, type Logger } from 'pino';

/** Where a shared gateway session's log lines go: the nodes using it. */
export interface LogSink {
  log(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

/**
 * A pino logger (what the gateway's Publisher logs to) whose lines land in Node-RED's log
 * through `sink`: info as log, warn as warn, error and worse as error; debug is dropped.
 */
export function nodeLogger(sink: () => LogSink | undefined): Logger {
  return pino(
    { level: 'info', base: undefined, timestamp: false },
    {
      write(line: string) {
        const s = sink();
        if (!s) return;
        let rec: { level?: number; msg?: string; [k: string]: unknown };
        try {
          rec = JSON.parse(line) as typeof rec;
        } catch {
          return;
        }
        const { level = 30, msg = '', ...fields } = rec;
        const text = Object.keys(fields).length > 0 ? `${msg} ${JSON.stringify(fields)}` : msg;
        if (level >= 50) s.error(text);
        else if (level >= 40) s.warn(text);
        else s.log(text);
      },
    },
  );
}
