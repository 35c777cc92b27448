// Live events can arrive many times a second (a reading per meter every few seconds, trades in
// bursts); a section reloads from the API at most once per `ms`, with the last request honoured.

export function throttled(fn, ms) {
  let timer = null;
  let last = 0;
  const run = () => {
    timer = null;
    last = Date.now();
    void fn();
  };
  const call = () => {
    if (timer) return;
    const wait = Math.max(0, last + ms - Date.now());
    timer = setTimeout(run, wait);
  };
  call.cancel = () => {
    clearTimeout(timer);
    timer = null;
  };
  return call;
}
