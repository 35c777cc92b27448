// Building the DOM from API data. Everything the API sends is treated as hostile: text goes in
// as text nodes (textContent), never as markup, so a certificate's "reason" that looks like
// <img onerror=…> shows as those characters. There is no innerHTML anywhere in these pages.

/**
 * An element: h('td', { class: 'num', 'data-label': 'Price' }, text, child…). Strings and numbers
 * become text nodes; `on*` props that are functions become listeners; null/false are skipped.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (name === 'value') el.value = String(value);
    else if (value === true) el.setAttribute(name, '');
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A titled section with an id tests and people can link to. */
export function section(id, title, ...children) {
  return h('section', { class: 'card', id, 'aria-labelledby': `${id}-title` }, h('h2', { id: `${id}-title` }, title), ...children);
}

/**
 * A table; on a phone each row becomes a small card whose cells carry their column name
 * (app.css reads data-label), so nothing scrolls sideways.
 */
export function table(columns, rows, empty = 'Nothing yet.') {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h(
    'table',
    { class: 'data' },
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))),
    h(
      'tbody',
      {},
      rows.map((row) =>
        h(
          'tr',
          { 'data-id': row.id ?? null },
          columns.map((c) => h('td', { 'data-label': c.label, class: c.num ? 'num' : null }, c.value(row) ?? '—')),
        ),
      ),
    ),
  );
}

/** An error or success line under a form; `role=alert` so screen readers announce it. */
export function message(el, text, kind = 'error') {
  el.hidden = !text;
  el.className = kind;
  el.textContent = text ?? '';
}

/** A labelled form field. */
export function field(label, input) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input);
}

/** A <select> of [value, label] pairs. */
export function select(name, options, selected) {
  return h('select', { name }, options.map(([value, label]) => h('option', { value, selected: value === selected }, label)));
}

// ---- numbers: the API's own strings where it sends strings; integers formatted without floats ----

/** A decimal string as the API gives it, without trailing zeros past two places (NRG has 18). */
export function amount(decimal) {
  const s = String(decimal);
  const m = /^(-?\d+)\.(\d*?)0*$/.exec(s);
  if (!m) return s;
  return `${m[1]}.${m[2].padEnd(2, '0')}`;
}

/** Integer Wh as kWh with three decimals, by integer arithmetic: 12345 → "12.345 kWh". */
export function kwh(wh) {
  if (typeof wh !== 'number' || !Number.isSafeInteger(wh)) return '—';
  return `${thousandths(wh)} kWh`;
}

/** Integer W as kW with three decimals: -2500 → "-2.500 kW". */
export function kw(w) {
  if (typeof w !== 'number' || !Number.isSafeInteger(w)) return '—';
  return `${thousandths(w)} kW`;
}

function thousandths(n) {
  const sign = n < 0 ? '-' : '';
  const abs = Math.abs(n);
  return `${sign}${Math.trunc(abs / 1000).toLocaleString('en-US')}.${String(abs % 1000).padStart(3, '0')}`;
}

/** An ISO instant as local date and time, to the minute; the raw text if it does not parse. */
export function when(iso) {
  if (typeof iso !== 'string') return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

/** An ISO instant as a local time of day. */
export function clock(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

/** Local midnight today, as the API's ISO-8601 form. */
export function startOfToday() {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  return d.toISOString();
}

/** A small status badge (open, retired, online…): the class is from a fixed list, the text is the data. */
const BADGES = new Set(['open', 'filled', 'partial', 'unmatched', 'cancelled', 'active', 'for_sale', 'sold', 'retired', 'online', 'offline', 'revoked', 'passed', 'rejected', 'executed', 'pending', 'used', 'expired', 'ok', 'fail']);
export function badge(text) {
  const t = String(text ?? '—');
  return h('span', { class: `badge${BADGES.has(t) ? ` b-${t}` : ''}` }, t);
}

/** A button that disables itself while its async action runs and reports a failure in `out`. */
export function actionButton(label, action, out, cls = 'small') {
  const b = h('button', { type: 'button', class: cls });
  b.textContent = label;
  b.addEventListener('click', async () => {
    b.disabled = true;
    try {
      await action();
    } catch (e) {
      if (out) message(out, e.message);
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

/** A form whose submit runs `action(values)`; failures show under it, and `done` text on success. */
export function form(id, fields, submitLabel, action) {
  const out = h('p', { class: 'error', role: 'alert', hidden: true });
  const button = h('button', { type: 'submit' }, submitLabel);
  const f = h('form', { id, class: 'inline', autocomplete: 'off' }, fields, h('div', { class: 'field submit' }, button), out);
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    button.disabled = true;
    message(out, '');
    try {
      const done = await action(Object.fromEntries(new FormData(f)), f);
      if (done) message(out, done, 'ok');
    } catch (e) {
      message(out, e.message);
    } finally {
      button.disabled = false;
    }
  });
  return f;
}

/**
 * Fills `el` with what `render()` builds; a failure (a refused call, say) shows its message in
 * place, so one section that cannot load never blanks the others.
 */
export async function loadInto(el, render) {
  try {
    fill(el, await render());
  } catch (e) {
    fill(el, h('p', { class: 'error', role: 'alert' }, e.message));
  }
}

/** A long id (a 64-hex envelope id) shortened for reading, the whole of it in the tooltip. */
export function shortId(id) {
  if (typeof id !== 'string' || id === '') return '';
  return h('code', { title: id }, id.length > 14 ? `${id.slice(0, 12)}…` : id);
}
