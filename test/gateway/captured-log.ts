import { pino, type Logger } from 'pino';

export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A pino logger whose lines are kept (parsed) for assertions; GTX_TEST_LOG=debug also prints them. */
export function capturedLog(): { log: Logger; lines: LogLine[]; warnings: (match: RegExp) => LogLine[] } {
  const lines: LogLine[] = [];
  const echo = process.env.GTX_TEST_LOG === 'debug';
  const log = pino(
    { level: 'debug' },
    {
      write(s: string) {
        lines.push(JSON.parse(s) as LogLine);
        if (echo) process.stderr.write(s);
      },
    },
  );
  return { log, lines, warnings: (match) => lines.filter((l) => l.level === 40 && match.test(l.msg)) };
}
