import { pino, type Logger } from 'pino';

/** Structured JSON logs on stderr, so stdout stays for a command's own output. */
export function createLogger(name: string, level = process.env.GTX_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level }, pino.destination(2));
}
