/**
 * A one-line progress bar on stderr for long CLI work, with the time left estimated from the
 * rate so far; silent when stderr is not a terminal (scripts and logs get the result lines only).
 */
export function progressBar(label: string): { update(done: number, total: number): void; done(): void } {
  const tty = process.stderr.isTTY;
  const started = performance.now();
  let shown = false;
  return {
    update(done, total) {
      if (!tty || total === 0) return;
      const width = 30;
      const filled = Math.round((done / total) * width);
      const elapsed = (performance.now() - started) / 1000;
      const left = done > 0 && done < total ? ` about ${formatSeconds((elapsed / done) * (total - done))} left` : '';
      process.stderr.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}${left}   `);
      shown = true;
    },
    done() {
      if (shown) process.stderr.write('\n');
    },
  };
}

function formatSeconds(s: number): string {
  if (s < 90) return `${Math.ceil(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}
