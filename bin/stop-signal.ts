/**
 * Resolves at the first SIGINT or SIGTERM (or when `signal` aborts), for services that then stop
 * cleanly. The handlers stay installed: under `npm start` / `npx gtx` one Ctrl-C reaches this
 * process twice (from the terminal and forwarded by npm), and a repeat with no handler would
 * kill it halfway through its clean stop. A third signal gives up on the clean stop (exit 1).
 */
export function untilStopSignal(opts: { signal?: AbortSignal } = {}): Promise<void> {
  return new Promise<void>((resolve) => {
    let received = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      received++;
      if (received === 1) resolve();
      else if (received >= 3) {
        process.stderr.write(`gtx: ${sig} again while stopping; exiting without finishing the clean stop\n`);
        process.exit(1);
      }
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    if (opts.signal?.aborted) resolve();
    else opts.signal?.addEventListener('abort', () => resolve(), { once: true });
  });
}
