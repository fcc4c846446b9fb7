// federa dashboard: plain JavaScript and SVG, served by the coordinator's admin listener.
// It reads the REST API under /api/v1/ and follows /api/v1/events (server-sent events, read with
// fetch so the bearer token travels in a header). Every value is put on the page with
// textContent or SVG attributes, never as HTML.
'use strict';

const S = { token: null, role: null, name: null, status: null, clients: null, members: null,
  rounds: [], offset: 0, lastId: '0', refreshTimer: null, streamAbort: null };
const $ = (id) => document.getElementById(id);
const SVGNS = 'http://www.w3.org/2000/svg';

function el(tag, attrs, ...children) {
  const e = tag.startsWith('svg:') ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === 'class') e.setAttribute('class', v); else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function toast(text, bad) {
  const t = $('toast');
  t.textContent = text;
  t.className = 'show' + (bad ? ' bad' : '');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = ''; }, 4000);
}

function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  if (S.token) h.Authorization = 'Bearer ' + S.token;
  return h;
}

async function api(method, path, body) {
  const opt = { method, cache: 'no-store', headers: authHeaders(method === 'GET' ? {} : { 'Content-Type': 'application/json' }) };
  if (method === 'POST') opt.body = JSON.stringify(body || {});
  const r = await fetch(path, opt);
  const text = await r.text();
  let data = text;
  try { data = JSON.parse(text); } catch (e) { /* not JSON */ }
  if (!r.ok) {
    const err = new Error((data && data.error) || (r.status + ' ' + r.statusText));
    err.status = r.status;
    throw err;
  }
  return data;
}

// ---- sign in ----------------------------------------------------------------------------------

function takeTokenFromFragment() {
  const m = location.hash.match(/token=([A-Za-z0-9_]+)/);
  if (m) {
    sessionStorage.setItem('federa.token', m[1]);
    history.replaceState(null, '', location.pathname);
  }
}

async function signIn() {
  S.token = sessionStorage.getItem('federa.token');
  try {
    const me = await api('GET', '/api/v1/whoami');
    S.role = me.role;
    S.name = me.name;
  } catch (e) {
    if (S.token && (e.status === 401 || e.status === 403)) sessionStorage.removeItem('federa.token');
    S.token = null;
    showLogin(S.token === null && e.status !== 401 ? e.message : (sessionStorage.length ? e.message : ''));
    return;
  }
  $('login').hidden = true;
  $('app').hidden = false;
  $('logout').hidden = !S.token;
  $('who').textContent = S.name + ' (' + S.role + ')';
  document.body.classList.toggle('operator', S.role === 'operator');
  await refreshAll();
  stream();
}

function showLogin(message) {
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  $('token').focus();
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  sessionStorage.setItem('federa.token', $('token').value.trim());
  $('token').value = '';
  $('login-error').textContent = '';
  signIn().catch((e) => showLogin(e.message));
});

$('logout').addEventListener('click', () => {
  sessionStorage.removeItem('federa.token');
  location.reload();
});

// ---- data -------------------------------------------------------------------------------------

async function refreshAll() {
  const [status, clients, rounds, members] = await Promise.all([
    api('GET', '/api/v1/status'), api('GET', '/api/v1/clients'), api('GET', '/api/v1/rounds'), api('GET', '/api/v1/members')]);
  S.status = status; S.clients = clients; S.rounds = rounds.rounds; S.members = members;
  S.offset = Date.parse(status.server_time) - Date.now();
  render();
}

function scheduleRefresh() {
  if (S.refreshTimer) return;
  S.refreshTimer = setTimeout(() => {
    S.refreshTimer = null;
    refreshAll().catch((e) => { if (e.status === 401 || e.status === 403) location.reload(); });
  }, 250);
}

async function stream() {
  for (;;) {
    try {
      // Last-Event-ID 0 at first: the listener replays the recent events it keeps.
      const headers = authHeaders({ 'Last-Event-ID': S.lastId });
      const r = await fetch('/api/v1/events', { headers, cache: 'no-store' });
      if (r.status === 401 || r.status === 403) { location.reload(); return; }
      if (!r.ok) throw new Error('events: ' + r.status);
      setLive(true);
      scheduleRefresh();
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          onFrame(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
      }
    } catch (e) { /* reconnect below */ }
    setLive(false);
    await new Promise((res) => setTimeout(res, 3000));
  }
}

function setLive(on) {
  $('live').textContent = on ? 'live' : 'offline';
  $('live').className = 'badge ' + (on ? 'on' : 'off');
}

function onFrame(frame) {
  let event = 'message', data = '', id = null;
  for (const line of frame.split('\n')) {
    if (line.startsWith(':')) continue;
    const c = line.indexOf(':');
    const k = c < 0 ? line : line.slice(0, c), v = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
    if (k === 'event') event = v; else if (k === 'data') data += v; else if (k === 'id') id = v;
  }
  if (id) S.lastId = id;
  if (!data) return;
  let obj = {};
  try { obj = JSON.parse(data); } catch (e) { return; }
  if (event === 'resync') { scheduleRefresh(); return; }
  addEvent(event, obj);
  scheduleRefresh();
}

function describe(event, o) {
  switch (event) {
    case 'client_joined': return `${o.client} joined from ${o.address || '?'}`;
    case 'client_left': return `${o.client} left: ${o.reason}`;
    case 'client_refused': return `refused ${o.client || '(no name)'} ${o.address || ''}: ${o.reason}`;
    case 'round_started': return `round ${o.round}${o.attempt > 1 ? ' (attempt ' + o.attempt + ')' : ''} started with ${o.selected.length} clients`;
    case 'update': return `round ${o.round}: ${o.client} ${o.outcome}${o.reason ? ' — ' + o.reason : ''}`;
    case 'round_failed': return `round ${o.round} attempt ${o.attempt} failed: ${o.reason}`;
    case 'round_committed': return `round ${o.round} committed (${o.clients} of ${o.selected} accepted)`;
    case 'job_finished': return o.ok ? 'job finished' : `job ended: ${o.reason}`;
    case 'members_changed': return o.added ? `member ${o.added} added` : `member ${o.removed} removed`;
    case 'paused': return `paused by ${o.by}`;
    case 'resumed': return `resumed by ${o.by}`;
    case 'stopping': return `stopping: ${o.reason}`;
    default: return event;
  }
}

function addEvent(event, o) {
  const list = $('events');
  const time = o.time ? new Date(o.time).toLocaleTimeString() : '';
  list.prepend(el('li', { class: 'ev-' + event, text: `${time}  ${describe(event, o)}` }));
  while (list.children.length > 200) list.lastChild.remove();
}

// ---- rendering --------------------------------------------------------------------------------

function fmt(v, digits) { return typeof v === 'number' ? v.toFixed(digits) : '—'; }
function duration(ms) {
  if (typeof ms !== 'number') return '—';
  return ms < 1000 ? Math.round(ms) + ' ms' : (ms / 1000).toFixed(1) + ' s';
}
function since(iso) { return iso ? new Date(iso).toLocaleString() : '—'; }

function render() {
  const s = S.status;
  $('federation').textContent = '— ' + s.federation;
  $('phase').textContent = s.phase;
  $('job-note').textContent = s.job_result ? (s.job_result.ok ? 'all rounds committed' : s.job_result.reason) : (s.paused ? 'no new round starts until resumed' : '');
  const cur = s.round;
  $('round').textContent = cur ? `${cur.round} / ${s.rounds_total}` : `${s.rounds_completed} / ${s.rounds_total}`;
  $('round-note').textContent = cur ? `${cur.accepted + cur.rejected + cur.dropped} of ${cur.selected.length} answered${cur.secure ? ', SecAgg+' : ''}` : `${s.rounds_completed} committed`;
  $('connected').textContent = s.clients_connected;
  $('members-note').textContent = s.open_membership ? 'open membership (any client the CA signed)' : `${s.members} members`;
  $('deadline').textContent = cur ? 'at ' + new Date(cur.deadline).toLocaleTimeString() : '';
  $('pause').disabled = s.paused || !!s.job_result;
  $('resume').disabled = !s.paused || s.stopping || !!s.job_result;
  $('stop').disabled = s.stopping || !!s.job_result;
  renderClients();
  renderMembers();
  renderRounds();
  renderChart();
  renderParticipation();
  tickCountdown();
}

function tickCountdown() {
  const cur = S.status && S.status.round;
  if (!cur) { $('countdown').textContent = '—'; return; }
  const left = Math.max(0, Date.parse(cur.deadline) - (Date.now() + S.offset));
  const sec = Math.floor(left / 1000);
  $('countdown').textContent = `${Math.floor(sec / 60)}:${String(sec % 60).padStart(2, '0')}`;
}
setInterval(tickCountdown, 250);

function renderClients() {
  const body = $('clients').tBodies[0];
  body.replaceChildren();
  const removable = S.members && !S.members.open_membership;
  for (const c of S.clients.clients) {
    const state = c.connected ? 'connected' : c.seen ? 'left' : 'never';
    const stateText = c.connected ? 'connected' : c.seen ? 'left' + (c.left_reason ? ': ' + c.left_reason : '') : 'never connected';
    const revoke = removable && c.member
      ? el('button', { type: 'button', class: 'danger', text: 'Revoke', onclick: () => revokeMember(c.name) }) : null;
    body.append(el('tr', { 'data-client': c.name },
      el('td', { text: c.name + (c.member ? '' : ' (not a member)') }),
      el('td', { class: 'state-' + state, text: stateText }),
      el('td', { text: c.connected ? since(c.connected_since) : (c.left_at ? 'left ' + since(c.left_at) : '—') }),
      el('td', { text: c.address || '—' }),
      el('td', { text: c.seen ? `${c.rounds_accepted} of ${c.rounds_selected} selected` : '—' }),
      el('td', { class: 'outcome-' + (c.last_outcome || ''), text: c.last_outcome ? `${c.last_outcome} (round ${c.last_round})` : '—' }),
      el('td', { text: c.last_reason || '' }),
      el('td', { class: 'operator-only' }, revoke)));
  }
  const refused = $('refused');
  refused.replaceChildren(...S.clients.refused.slice().reverse().map((r) =>
    el('li', { text: `${new Date(r.time).toLocaleTimeString()} ${r.client || '(no name)'} ${r.address}: ${r.reason}` })));
  $('refused-count').textContent = S.clients.refused.length;
}

function renderMembers() {
  const m = S.members;
  const connected = new Set(S.clients.clients.filter((c) => c.connected).map((c) => c.name));
  $('members-mode').textContent = m.open_membership
    ? 'No member list: any client the federation CA signed is admitted (start the coordinator with --members FILE to manage members).'
    : `Member list ${m.file}: changes apply at once and are written to that file.`;
  $('members').replaceChildren(...m.members.map((n) => el('li', { class: connected.has(n) ? 'connected' : '', text: n })));
  $('add-member').hidden = m.open_membership;
}

function renderRounds() {
  const body = $('rounds').tBodies[0];
  body.replaceChildren();
  for (const r of S.rounds.slice(-50).reverse()) {
    body.append(el('tr', { class: 'clickable', onclick: () => showRound(r.round) },
      el('td', { text: r.round }),
      el('td', { text: r.committed_at ? new Date(r.committed_at).toLocaleTimeString() : '(before restart)' }),
      el('td', { text: duration(r.duration_ms) }),
      el('td', { text: `${r.clients ?? '—'} / ${r.selected ?? '—'}` }),
      el('td', { text: fmt(r.loss, 4) }), el('td', { text: fmt(r.accuracy, 4) }),
      el('td', { text: fmt(r.fed_loss, 4) }), el('td', { text: fmt(r.fed_accuracy, 4) })));
  }
}

async function showRound(n) {
  const box = $('round-detail');
  try {
    const r = await api('GET', '/api/v1/rounds/' + n);
    const rows = (r.clients || []).map((c) => el('tr', {},
      el('td', { text: c.client }), el('td', { class: 'outcome-' + c.outcome, text: c.outcome }),
      el('td', { text: c.num_examples ?? '' }), el('td', { text: c.reason || '' })));
    const failed = (r.failed_attempts || []).map((a) => el('li', { text: `attempt ${a.attempt}: ${a.reason}` }));
    box.replaceChildren(el('h3', { text: `Round ${n}` }),
      rows.length ? el('table', {}, el('thead', {}, el('tr', {}, ...['client', 'outcome', 'examples', 'reason'].map((h) => el('th', { text: h })))), el('tbody', {}, ...rows))
        : el('p', { class: 'muted', text: 'Per-client outcomes are not kept for this round.' }),
      failed.length ? el('ul', {}, ...failed) : null);
  } catch (e) { toast(e.message, true); }
}

// One series per metric; a round without the metric leaves a gap.
function renderChart() {
  const svg = $('chart');
  svg.replaceChildren();
  const W = 720, H = 280, L = 48, R = 52, T = 12, B = 30;
  const rounds = S.rounds;
  const xs = rounds.map((r) => r.round);
  const minX = Math.min(...xs, 1), maxX = Math.max(...xs, minX + 1);
  const x = (n) => L + (W - L - R) * (n - minX) / (maxX - minX);
  const losses = rounds.flatMap((r) => [r.loss, r.fed_loss]).filter((v) => typeof v === 'number' && isFinite(v));
  const maxLoss = losses.length ? Math.max(...losses) * 1.1 || 1 : 1;
  const yAcc = (v) => T + (H - T - B) * (1 - v);
  const yLoss = (v) => T + (H - T - B) * (1 - v / maxLoss);
  for (let i = 0; i <= 4; i++) {
    const y = T + (H - T - B) * i / 4;
    svg.append(el('svg:line', { class: 'grid', x1: L, x2: W - R, y1: y, y2: y }));
    svg.append(el('svg:text', { x: L - 6, y: y + 4, 'text-anchor': 'end', text: (1 - i / 4).toFixed(2) }));
    svg.append(el('svg:text', { x: W - R + 6, y: y + 4, text: (maxLoss * (1 - i / 4)).toPrecision(3) }));
  }
  svg.append(el('svg:line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
  const step = Math.max(1, Math.ceil((maxX - minX) / 10));
  for (let n = minX; n <= maxX; n += step) svg.append(el('svg:text', { x: x(n), y: H - B + 16, 'text-anchor': 'middle', text: n }));
  svg.append(el('svg:text', { x: L + 6, y: T + 14, text: 'accuracy (left)' }));
  svg.append(el('svg:text', { x: W - R - 6, y: T + 14, 'text-anchor': 'end', text: 'loss (right)' }));
  const series = [['accuracy', yAcc], ['fed_accuracy', yAcc], ['loss', yLoss], ['fed_loss', yLoss]];
  for (const [key, y] of series) {
    const pts = rounds.filter((r) => typeof r[key] === 'number' && isFinite(r[key]));
    if (!pts.length) continue;
    svg.append(el('svg:polyline', { class: 'line-' + key, points: pts.map((r) => `${x(r.round)},${y(r[key])}`).join(' ') }));
  }
  // One group per committed round holding its points, so each round is one element to find.
  for (const r of rounds) {
    const g = el('svg:g', { class: 'round', 'data-round': r.round });
    for (const [key, y] of series) {
      if (typeof r[key] !== 'number' || !isFinite(r[key])) continue;
      const c = el('svg:circle', { class: 'point point-' + key, cx: x(r.round), cy: y(r[key]), r: 3 });
      c.append(el('svg:title', { text: `round ${r.round}: ${key} ${r[key].toFixed(4)}` }));
      g.append(c);
    }
    svg.append(g);
  }
}

function renderParticipation() {
  const svg = $('participation');
  svg.replaceChildren();
  const W = 720, H = 140, L = 48, R = 52, T = 8, B = 22;
  const rounds = S.rounds.slice(-60);
  if (!rounds.length) return;
  const max = Math.max(1, ...rounds.map((r) => r.selected || 0));
  const bw = (W - L - R) / rounds.length;
  const h = (v) => (H - T - B) * v / max;
  svg.append(el('svg:text', { x: L - 6, y: T + 8, 'text-anchor': 'end', text: max }));
  svg.append(el('svg:line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
  rounds.forEach((r, i) => {
    let y = H - B;
    const acc = r.clients || 0, rej = r.rejected || 0, drop = r.dropped || 0;
    for (const [cls, v] of [['accepted', acc], ['rejected', rej], ['dropped', drop]]) {
      if (!v) continue;
      y -= h(v);
      const rect = el('svg:rect', { class: 'bar-' + cls, x: L + i * bw + 1, y, width: Math.max(1, bw - 2), height: h(v) });
      rect.append(el('svg:title', { text: `round ${r.round}: ${v} ${cls}` }));
      svg.append(rect);
    }
    if (rounds.length <= 30 || i % Math.ceil(rounds.length / 30) === 0)
      svg.append(el('svg:text', { x: L + i * bw + bw / 2, y: H - 6, 'text-anchor': 'middle', text: r.round }));
  });
}

// ---- actions (operators) ----------------------------------------------------------------------

async function act(method, path, body, done) {
  try {
    await api(method, path, body);
    toast(done);
    scheduleRefresh();
  } catch (e) { toast(e.message, true); }
}

function revokeMember(name) {
  if (!confirm(`Revoke ${name}? Its session is closed at once and it cannot reconnect.`)) return;
  act('DELETE', '/api/v1/members/' + encodeURIComponent(name), undefined, `${name} revoked`);
}

$('pause').addEventListener('click', () => act('POST', '/api/v1/pause', {}, 'paused: the open round finishes, no new one starts'));
$('resume').addEventListener('click', () => act('POST', '/api/v1/resume', {}, 'resumed'));
$('stop').addEventListener('click', () => {
  const after = $('stop-after-round').checked;
  if (!confirm(after ? 'Stop the job after the open round commits?' : 'Stop the job now? The open round is abandoned; committed rounds stay.')) return;
  act('POST', '/api/v1/stop', { after_round: after }, 'stopping');
});
$('add-member').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = $('new-member').value.trim();
  act('POST', '/api/v1/members', { name }, `${name} added`).then(() => { $('new-member').value = ''; });
});

setInterval(() => { if (S.status) scheduleRefresh(); }, 5000);
takeTokenFromFragment();
signIn().catch((e) => showLogin(e.message));
