// The pages' entry: sign-in with an API key (kept in sessionStorage: this tab only, gone when it
// closes), one live event stream per session, and the views the key's role may see.

import { ApiError, createApi, streamEvents } from './api.js';
import { fill, h, message } from './dom.js';
import * as prosumer from './views/prosumer.js';
import * as market from './views/market.js';
import * as installer from './views/installer.js';
import * as utility from './views/utility.js';

const KEY = 'gtx.apiKey';

/** Views by name; each exports `title` and `mount(root, ctx)` → { onEvent?, destroy? }. */
const VIEWS = { prosumer, market, installer, utility };

/** What each role sees, first one the default. The API enforces the same on every call. */
const VIEWS_BY_ROLE = {
  prosumer: ['prosumer', 'market'],
  installer: ['installer', 'market'],
  utility: ['utility', 'market'],
  admin: ['utility', 'installer', 'market'],
};

const LIVE_TEXT = { connecting: 'connecting…', live: 'live', retrying: 'reconnecting…', off: 'not live' };

const $ = (id) => document.getElementById(id);
let session = null;

function showSignIn(text) {
  session?.stop();
  session = null;
  sessionStorage.removeItem(KEY);
  $('tabs').hidden = true;
  $('who').hidden = true;
  fill($('view'));
  $('sign-in').hidden = false;
  message($('sign-in-error'), text ?? '');
  $('api-key').value = '';
  $('api-key').focus();
}

async function signIn(key) {
  const api = createApi(key, () => showSignIn('The key was refused (revoked?). Sign in again.'));
  const me = await api.get('/me');
  sessionStorage.setItem(KEY, key);
  $('sign-in').hidden = true;
  start(key, api, me);
}

function start(key, api, me) {
  const views = VIEWS_BY_ROLE[me.role] ?? ['market'];
  const controller = new AbortController();
  let current = null;
  fill(
    $('identity'),
    h('span', { class: 'role', id: 'role' }, me.role),
    me.account ? h('span', { class: 'account', id: 'account' }, me.account) : null,
    me.customers ? h('span', { class: 'account' }, `${me.customers.length} customer${me.customers.length === 1 ? '' : 's'}`) : null,
  );
  $('who').hidden = false;
  const tabs = $('tabs');
  fill(
    tabs,
    views.map((v) => h('a', { href: `#${v}`, id: `tab-${v}`, 'data-view': v }, VIEWS[v].title)),
  );
  tabs.hidden = views.length < 2;

  const show = () => {
    const wanted = location.hash.slice(1);
    const name = views.includes(wanted) ? wanted : views[0];
    if (current?.name === name) return;
    current?.destroy?.();
    for (const a of tabs.querySelectorAll('a')) a.setAttribute('aria-current', a.dataset.view === name ? 'page' : 'false');
    const root = h('div', { class: 'view', id: `view-${name}` });
    fill($('view'), root);
    const ctx = { api, me, market: me.markets?.[0]?.id ?? null };
    current = { name, ...(VIEWS[name].mount(root, ctx) ?? {}) };
  };
  window.addEventListener('hashchange', show, { signal: controller.signal });
  show();

  const live = $('live');
  streamEvents(key, {
    signal: controller.signal,
    onState: (state) => {
      live.dataset.state = state;
      live.textContent = LIVE_TEXT[state] ?? state;
    },
    onUnauthorized: () => showSignIn('The key was refused (revoked?). Sign in again.'),
    onEvent: (name, data) => current?.onEvent?.(name, data),
  });

  session = {
    stop() {
      controller.abort();
      current?.destroy?.();
      current = null;
    },
  };
}

$('sign-in-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const key = $('api-key').value.trim();
  const button = ev.submitter ?? $('sign-in-form').querySelector('button');
  button.disabled = true;
  message($('sign-in-error'), '');
  try {
    await signIn(key);
  } catch (e) {
    message($('sign-in-error'), e instanceof ApiError && e.status === 401 ? 'This key is not known or was revoked.' : e.message);
  } finally {
    button.disabled = false;
  }
});

$('sign-out').addEventListener('click', () => {
  history.replaceState(null, '', location.pathname);
  showSignIn();
});

const saved = sessionStorage.getItem(KEY);
if (saved) signIn(saved).catch((e) => showSignIn(e instanceof ApiError && e.status === 401 ? 'The key was refused (revoked?). Sign in again.' : e.message));
else showSignIn();
