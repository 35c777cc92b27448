/**
 * The file a worker thread starts from, beside the calling module (`callerUrl`: its
 * import.meta.url). Compiled (dist/, what `gtx` runs), the worker starts from the compiled
 * module. Run as TypeScript (vitest, benchmarks under tsx), a worker has no TypeScript loader
 * of its own, so it starts from a plain-JavaScript shim beside the sources that registers tsx
 * and then imports the module; the shims are not part of dist/.
 */
export function workerEntry(callerUrl: string, compiled: string, tsShim: string): URL {
  return new URL(new URL(callerUrl).pathname.endsWith('.ts') ? tsShim : compiled, callerUrl);
}
