
'use strict';
// The console's page logic. Every value from the summary reaches the page through textContent
// or an attribute, never as markup: fleet and namespace names are user input.
(() => {
  // Relative to wherever the page is served (a port-forward, `kubectl proxy`'s path prefix).
  const base = location.pathname.replace(/\/+$/, '');
  const POLL_MS = 2000;
  // After falling back to polling, try the stream again now and then: the failure may have
  // been a restart of the replica, not a proxy that cannot stream.
  const RETRY_STREAM_MS = 30000;

  const GROUPS = [
    { key: 'Ready', states: ['Ready'] },
    { key: 'Allocated', states: ['Allocated'] },
    { key: 'Reserved', states: ['Reserved'] },
    { key: 'Starting', states: ['Creating', 'Scheduled', 'RequestReady'] },
    { key: 'Failed', states: ['Unhealthy', 'Error'] },
    { key: 'Shutdown', states: ['Shutdown'] },
  ];

  const $ = (id) => document.getElementById(id);

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === 'text') node.textContent = value;
      else if (key === 'className') node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  const time = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : '');
  const fleetKey = (row) => `${row.namespace}/${row.name}`;

  function grouped(counts) {
    return GROUPS.map((g) => ({
      key: g.key,
      states: g.states,
      count: g.states.reduce((sum, s) => sum + (counts.servers[s] || 0), 0),
    }));
  }

  // Previous counts per fleet and group, to flash the cells that changed.
  let previous = new Map();

  function countCell(row, group, flash) {
    const title = group.states.map((s) => `${s} ${row.servers[s] || 0}`).join(' · ');
    const chip = el('span', { className: group.count ? 'count' : 'count zero', text: String(group.count) });
    const cell = el('td', { className: 'num', 'data-state': group.key, 'data-count': String(group.count), title }, chip);
    if (flash) cell.classList.add('changed');
    return cell;
  }

  function mixBar(groups, total) {
    const bar = el('div', { className: 'bar' });
    for (const g of groups) {
      if (!g.count) continue;
      const part = el('span', { className: g.key, title: `${g.key} ${g.count}` });
      part.style.width = `${(100 * g.count) / total}%`;
      bar.append(part);
    }
    return el('td', { className: 'mix' }, bar);
  }

  function fleetRow(row, seen) {
    const key = fleetKey(row);
    const groups = grouped(row);
    const name = el('td', { className: 'name' },
      el('span', { className: 'ns', text: `${row.namespace}/` }),
      row.name || '(servers of no fleet)');
    const tr = el('tr', { 'data-fleet': key }, name,
      el('td', { className: 'num', 'data-field': 'desired', text: row.desired == null ? '—' : String(row.desired) }));
    const before = previous.get(key);
    for (const g of groups) {
      tr.append(countCell(row, g, before !== undefined && before[g.key] !== g.count));
    }
    tr.append(mixBar(groups, row.total),
      el('td', { className: 'num', 'data-field': 'players', text: `${row.players} / ${row.capacity}` }));
    seen.set(key, Object.fromEntries(groups.map((g) => [g.key, g.count])));
    return tr;
  }

  function renderFleets(summary) {
    const seen = new Map();
    $('fleet-rows').replaceChildren(...summary.fleets.map((row) => fleetRow(row, seen)));
    previous = seen;
    const totals = summary.totals;
    const desired = summary.fleets.reduce((sum, r) => sum + (r.desired || 0), 0);
    const foot = el('tr', { 'data-fleet': '*' },
      el('td', { className: 'name', text: 'total' }),
      el('td', { className: 'num', text: String(desired) }));
    const groups = grouped(totals);
    for (const g of groups) foot.append(countCell(totals, g, false));
    foot.append(mixBar(groups, totals.total),
      el('td', { className: 'num', text: `${totals.players} / ${totals.capacity}` }));
    $('totals').replaceChildren(foot);
    $('no-fleets').hidden = summary.fleets.length > 0;
    const n = summary.fleets.filter((r) => r.name).length;
    $('fleet-count').textContent = `${n} fleet${n === 1 ? '' : 's'} · ${totals.total} servers`;
  }

  function renderAllocations(a) {
    const rate = $('alloc-rate');
    rate.textContent = String(a.perMinute);
    rate.dataset.value = String(a.perMinute);
    const allocated = a.total.allocated || 0;
    const total = $('alloc-total');
    total.textContent = String(allocated);
    total.dataset.value = String(allocated);

    const svg = $('alloc-chart');
    const ns = svg.namespaceURI;
    const max = Math.max(1, ...a.perSecond);
    const width = 240 / a.perSecond.length;
    const bars = a.perSecond.map((count, i) => {
      const rect = document.createElementNS(ns, 'rect');
      const height = count ? Math.max(2, (46 * count) / max) : 0;
      rect.setAttribute('x', String(i * width + 0.5));
      rect.setAttribute('width', String(Math.max(1, width - 1)));
      rect.setAttribute('y', String(48 - height));
      rect.setAttribute('height', String(height));
      const title = document.createElementNS(ns, 'title');
      title.textContent = `${count} allocated, ${a.perSecond.length - i} s ago`;
      rect.append(title);
      return rect;
    });
    svg.replaceChildren(...bars);

    const results = [...new Set([...Object.keys(a.total), ...Object.keys(a.lastMinute)])].sort();
    const rows = results.map((r) => el('tr', { 'data-result': r },
      el('td', { className: 'name', text: r.replace(/_/g, ' ') }),
      el('td', { className: 'num', text: String(a.lastMinute[r] || 0) }),
      el('td', { className: 'num', text: String(a.total[r] || 0) })));
    if (!rows.length) {
      rows.push(el('tr', {}, el('td', { className: 'muted', colspan: '3', text: 'No allocation requests yet.' })));
    }
    $('alloc-results').tBodies[0].replaceChildren(...rows);
  }

  function renderDecisions(summary) {
    const items = summary.decisions.map((d) => {
      const change = d.from === d.to ? `${d.to}` : `${d.from} → ${d.to}`;
      const label = el('span', { className: 'change', text: change });
      if (d.times > 1) label.append(el('span', { className: 'times', text: `×${d.times}` }));
      const why = [d.result.replace(/_/g, ' '), d.policy && `policy ${d.policy}`, d.reason]
        .filter(Boolean).join(' · ');
      return el('li', { 'data-autoscaler': `${d.namespace}/${d.autoscaler}`, 'data-result': d.result },
        el('span', { className: 'time', text: time(d.time) }),
        el('span', { className: 'what', text: `${d.namespace}/${d.fleet}`, title: `autoscaler ${d.autoscaler}` }),
        label,
        el('span', { className: 'why', text: why }));
    });
    $('decisions').replaceChildren(...items);
    const note = $('decisions-note');
    const leader = summary.leader;
    if (!leader.thisReplica) {
      note.textContent = leader.holder
        ? `This replica is not the leader. Autoscalers run on the leader, ${leader.holder}: open its console to see their decisions.`
        : 'This replica is not the leader, and no leader holds the lease right now. Autoscalers run on the leader only.';
    } else {
      note.textContent = items.length ? '' : 'No autoscaler has evaluated a fleet since this replica became leader.';
    }
    note.hidden = !note.textContent;
  }

  function render(summary) {
    $('identity').textContent = summary.identity;
    const leader = $('leader');
    leader.textContent = summary.leader.holder || (summary.leader.election ? 'none' : 'election off');
    leader.dataset.thisReplica = String(summary.leader.thisReplica);
    $('scope').textContent = summary.namespace ? `namespace ${summary.namespace}` : 'all namespaces';
    renderFleets(summary);
    renderAllocations(summary.allocations);
    renderDecisions(summary);
    $('updated').textContent = `updated ${time(summary.generatedAt)}`;
    $('updated').dataset.generatedAt = summary.generatedAt;
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  }

  function setMode(mode) {
    $('live').dataset.mode = mode;
    $('live-label').textContent = { stream: 'live', polling: 'live (polling)', offline: 'offline', connecting: 'connecting' }[mode];
  }

  let pollTimer = null;

  async function pollOnce() {
    try {
      const response = await fetch(`${base}/api/summary`, { cache: 'no-store' });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const summary = await response.json();
      // The stream may have come back while this request was out; it is the fresher source.
      if (pollTimer === null) return;
      render(summary);
      setMode('polling');
    } catch (e) {
      setMode('offline');
    }
  }

  function startPolling() {
    if (pollTimer !== null) return;
    pollTimer = setInterval(pollOnce, POLL_MS);
    pollOnce();
  }

  function stopPolling() {
    if (pollTimer === null) return;
    clearInterval(pollTimer);
    pollTimer = null;
  }

  function connect() {
    if (typeof EventSource !== 'function') {
      startPolling();
      return;
    }
    const source = new EventSource(`${base}/api/stream`);
    source.addEventListener('summary', (event) => {
      stopPolling();
      render(JSON.parse(event.data));
      setMode('stream');
    });
    // EventSource retries by itself, but a proxy that buffers or cuts streams would leave the
    // page frozen: poll instead, and give the stream another chance later.
    source.onerror = () => {
      source.close();
      startPolling();
      setTimeout(connect, RETRY_STREAM_MS);
    };
  }

  connect();
})();
