// Sundial's dashboard, progressively enhanced: every page reads without this script.
// - <time data-local> instants gain the viewer's own time and a relative time ("in 5 min").
// - Pages marked data-live refresh their #live region when the server says something changed (Server-Sent Events
//   from /ui/events); the stream is closed while the tab is hidden and reopened, with one refresh, when it shows.
'use strict';

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
const units = [['year', 31536000], ['month', 2592000], ['week', 604800], ['day', 86400], ['hour', 3600], ['minute', 60], ['second', 1]];

function relativeText(date) {
  const seconds = (date.getTime() - Date.now()) / 1000;
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size || unit === 'second') return relative.format(Math.round(seconds / size), unit);
  }
  return '';
}

function localize(root) {
  for (const element of root.querySelectorAll('time[data-local]')) {
    if (element.dataset.done) continue;
    const date = new Date(element.getAttribute('datetime'));
    if (Number.isNaN(date.getTime())) continue;
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    const yours = date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'long' });
    const extra = document.createElement('span');
    extra.className = 'viewer-time';
    extra.textContent = ` · yours: ${yours} (${zone}) · ${relativeText(date)}`;
    element.after(extra);
    element.dataset.done = '1';
  }
}

let source = null;
let refreshing = false;

async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    const answer = await fetch(location.href, { credentials: 'same-origin', headers: { Accept: 'text/html' } });
    if (!answer.ok || answer.redirected) return;
    const page = new DOMParser().parseFromString(await answer.text(), 'text/html');
    const fresh = page.getElementById('live');
    const live = document.getElementById('live');
    if (!fresh || !live) return;
    const focused = document.activeElement && live.contains(document.activeElement) && document.activeElement.matches('input, select, textarea');
    if (focused) return; // never swap a form out from under the person typing in it
    live.replaceChildren(...fresh.childNodes);
    localize(live);
  } finally {
    refreshing = false;
  }
}

function listen() {
  if (source || document.visibilityState !== 'visible') return;
  source = new EventSource('/ui/events');
  source.addEventListener('change', () => { refresh(); });
}

function stop() {
  if (source) source.close();
  source = null;
}

document.addEventListener('DOMContentLoaded', () => {
  localize(document);
  if (!document.body.dataset.live) return;
  listen();
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') {
      listen();
      refresh();
    } else {
      stop();
    }
  });
});
