// The analytics dashboard: asks for the admin key, then draws the KPI API's reports (tiles,
// actives and revenue over time, the retention triangle, a funnel) with uPlot, and follows the
// live counters over Server-Sent Events. Every request is relative to this page, so the page
// works behind any path prefix.
(() => {
  'use strict';

  const KEY_STORAGE = 'flotilla.analytics.adminKey';
  // The stream sends a snapshot a second; five minutes of them are drawn.
  const LIVE_POINTS = 300;
  const RETRY_STREAM_MS = 3000;
  // The KPI API trails the events by up to a minute: the reports refresh at that pace.
  const REPORT_REFRESH_MS = 60000;
  const DEFAULT_FUNNEL = 'session_start,progression,purchase';
  const COLOURS = ['#4c8dff', '#3fb950', '#d6a23b', '#b48cf2', '#f0554b', '#39c5cf'];

  const $ = (id) => document.getElementById(id);
  const el = (tag, text, className) => {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  };

  let key = sessionStorage.getItem(KEY_STORAGE);
  // Bumped on sign-out: a stream or report of an older session stops instead of drawing.
  let generation = 0;
  let streamAbort = null;
  let reportTimer = null;
  const charts = {};
  const live = { x: [], rate: [], concurrent: [] };
  let lastReport = null;

  class Unauthorised extends Error {}

  // --- the admin key ---------------------------------------------------------------------------

  function showLogin(message) {
    $('board').hidden = true;
    $('sign-out').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    $('key').focus();
  }

  function signOut(message) {
    generation += 1;
    key = null;
    sessionStorage.removeItem(KEY_STORAGE);
    if (streamAbort) streamAbort.abort();
    clearTimeout(reportTimer);
    setMode('off');
    showLogin(message);
  }

  async function api(path, params) {
    const query = params ? `?${new URLSearchParams(params)}` : '';
    const response = await fetch(`${path}${query}`, {
      headers: { Authorization: `Bearer ${key}` },
      cache: 'no-store',
    });
    const body = await response.json().catch(() => null);
    if (response.status === 401) throw new Unauthorised(body?.error?.message || 'admin key is invalid');
    if (!response.ok) throw new Error(body?.error?.message || `${path}: HTTP ${response.status}`);
    return body;
  }

  // --- the range --------------------------------------------------------------------------------

  // Today in `tz` as YYYY-MM-DD (the en-CA locale writes dates that way).
  function today(tz) {
    return new Intl.DateTimeFormat('en-CA', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit' })
      .format(new Date());
  }

  function addDays(date, days) {
    const at = new Date(`${date}T00:00:00Z`);
    at.setUTCDate(at.getUTCDate() + days);
    return at.toISOString().slice(0, 10);
  }

  // From the address (shareable links: ?tz=…&from=…&to=…&game=…&steps=…), else the last 30
  // days in the browser's zone.
  function initialRange() {
    const given = new URLSearchParams(location.search);
    const tz = given.get('tz') || Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
    let zoneToday;
    try {
      zoneToday = today(tz);
    } catch {
      zoneToday = today('UTC');
    }
    $('tz').value = tz;
    $('to').value = given.get('to') || zoneToday;
    $('from').value = given.get('from') || addDays($('to').value, -29);
    $('game').value = given.get('game') || '';
    $('funnel-steps').value = given.get('steps') || DEFAULT_FUNNEL;
  }

  function range() {
    const params = { from: $('from').value, to: $('to').value, tz: $('tz').value.trim() };
    const game = $('game').value.trim();
    if (game) params.game = game;
    return params;
  }

  // --- numbers ----------------------------------------------------------------------------------

  const integer = new Intl.NumberFormat();
  const decimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  const percent = new Intl.NumberFormat(undefined, { style: 'percent', maximumFractionDigits: 1 });

  // Amounts are in minor units; an ISO currency says how many digits those are, a game's own
  // currency (not ISO) is shown as the integer it is.
  function money(currency, minor) {
    try {
      const format = new Intl.NumberFormat(undefined, { style: 'currency', currency });
      const digits = format.resolvedOptions().maximumFractionDigits;
      return format.format(minor / 10 ** digits);
    } catch {
      return `${integer.format(minor)} ${currency}`;
    }
  }

  function duration(seconds) {
    if (seconds < 60) return `${Math.round(seconds)} s`;
    if (seconds < 3600) return `${decimal.format(seconds / 60)} min`;
    return `${decimal.format(seconds / 3600)} h`;
  }

  // --- charts -----------------------------------------------------------------------------------

  function dayTime(date) {
    return Date.parse(`${date}T00:00:00Z`) / 1000;
  }

  function chartWidth(id) {
    return Math.max(240, $(id).clientWidth);
  }

  // Draws (or redraws) the chart in #id; the container records how many points it shows.
  function draw(id, options, data) {
    if (charts[id]) charts[id].destroy();
    const container = $(id);
    container.textContent = '';
    charts[id] = new uPlot({ width: chartWidth(id), height: 220, ...options }, data, container);
    container.dataset.points = String(data[0].length);
  }

  // Every axis in the page's colours.
  function axesWith(extra) {
    const themed = { stroke: '#8b95ab', grid: { stroke: '#263047' }, ticks: { stroke: '#263047' } };
    return extra.map((axis) => ({ ...themed, ...axis }));
  }

  // Day-stamped series are drawn in UTC so a date is the date it says, whatever the browser's zone.
  const utcDays = { tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC') };

  function drawActives(days) {
    draw(
      'actives-chart',
      {
        ...utcDays,
        axes: axesWith([{}, {}]),
        series: [
          {},
          { label: 'DAU', stroke: COLOURS[0], width: 2 },
          { label: 'WAU', stroke: COLOURS[1], width: 2 },
          { label: 'MAU', stroke: COLOURS[2], width: 2 },
          { label: 'new', stroke: COLOURS[3], width: 1, dash: [4, 4] },
        ],
      },
      [
        days.map((d) => dayTime(d.date)),
        days.map((d) => d.dau),
        days.map((d) => d.wau),
        days.map((d) => d.mau),
        days.map((d) => d.newPlayers),
      ],
    );
  }

  function currenciesOf(days) {
    return [...new Set(days.flatMap((d) => Object.keys(d.revenue)))].sort();
  }

  function drawRevenue(days) {
    const currencies = currenciesOf(days);
    $('revenue-empty').hidden = currencies.length > 0;
    const bars = uPlot.paths.bars({ size: [0.8, 40] });
    draw(
      'revenue-chart',
      {
        ...utcDays,
        axes: axesWith([{}, { size: 70 }]),
        series: [
          {},
          ...currencies.map((currency, i) => ({
            label: currency,
            stroke: COLOURS[i % COLOURS.length],
            fill: `${COLOURS[i % COLOURS.length]}99`,
            paths: bars,
            points: { show: false },
            value: (u, v) => (v == null ? '–' : money(currency, v)),
          })),
        ],
      },
      [days.map((d) => dayTime(d.date)), ...currencies.map((c) => days.map((d) => d.revenue[c] || 0))],
    );
  }

  function drawLive() {
    draw(
      'live-chart',
      {
        scales: { players: { auto: true } },
        axes: axesWith([{}, { label: 'events / s' }, { scale: 'players', side: 1, grid: { show: false }, label: 'players' }]),
        series: [
          {},
          { label: 'events / s', stroke: COLOURS[0], width: 2, fill: `${COLOURS[0]}22` },
          { label: 'concurrent players', stroke: COLOURS[1], width: 2, scale: 'players' },
        ],
      },
      [live.x, live.rate, live.concurrent],
    );
  }

  function drawFunnel(funnel) {
    const names = funnel.steps.map((s) => s.name);
    draw(
      'funnel-chart',
      {
        scales: { x: { time: false, range: [-0.5, names.length - 0.5] } },
        axes: axesWith([{ values: (u, splits) => splits.map((i) => names[i] ?? ''), space: 40 }, {}]),
        series: [
          { label: 'step', value: (u, i) => names[i] ?? '' },
          {
            label: 'players',
            stroke: COLOURS[0],
            fill: `${COLOURS[0]}99`,
            paths: uPlot.paths.bars({ size: [0.6, 120] }),
            points: { show: false },
          },
        ],
      },
      [names.map((_, i) => i), funnel.steps.map((s) => s.players)],
    );
    const rows = $('funnel-table').tBodies[0];
    rows.textContent = '';
    for (const step of funnel.steps) {
      const row = rows.insertRow();
      row.dataset.step = step.name;
      row.append(
        el('td', step.name, 'name'),
        el('td', integer.format(step.players), 'num'),
        el('td', percent.format(step.fromFirst), 'num'),
        el('td', percent.format(step.fromPrevious), 'num'),
      );
      row.cells[1].dataset.value = String(step.players);
    }
  }

  // --- tiles and tables -------------------------------------------------------------------------

  function tile(name, value, detail, dataValue) {
    const node = el('div', undefined, 'tile');
    node.dataset.kpi = name;
    if (dataValue !== undefined) node.dataset.value = String(dataValue);
    node.append(el('span', name, 'label'), el('span', value, 'value'));
    if (detail) node.append(el('span', detail, 'detail'));
    return node;
  }

  function renderKpis(report, sessions) {
    const days = report.days;
    const last = days[days.length - 1];
    const sum = (pick) => days.reduce((total, day) => total + pick(day), 0);
    const revenue = {};
    for (const day of days) {
      for (const [currency, minor] of Object.entries(day.revenue)) revenue[currency] = (revenue[currency] || 0) + minor;
    }
    const sessionCount = sessions.days.reduce((t, d) => t + d.sessions, 0);
    const sessionSeconds = sessions.days.reduce((t, d) => t + d.totalSeconds, 0);
    const firstCurrency = Object.keys(last.arpdau)[0];
    $('kpi-scope').textContent = `${report.tz} · ${days[0].date} to ${last.date} · “${last.date}” tiles are that day`;
    const tiles = [
      tile('DAU', integer.format(last.dau), last.date, last.dau),
      tile('WAU', integer.format(last.wau), 'rolling 7 days', last.wau),
      tile('MAU', integer.format(last.mau), 'rolling 30 days', last.mau),
      tile('new players', integer.format(sum((d) => d.newPlayers)), 'in the range', sum((d) => d.newPlayers)),
      ...Object.entries(revenue).map(([currency, minor]) =>
        tile(`revenue ${currency}`, money(currency, minor), 'in the range', minor)),
      tile('ARPDAU', firstCurrency ? money(firstCurrency, last.arpdau[firstCurrency]) : '–', last.date),
      tile('ARPPU', firstCurrency ? money(firstCurrency, last.arppu[firstCurrency]) : '–', last.date),
      tile('paying share', percent.format(last.payingShare), last.date, last.payingShare),
      tile('conversion', percent.format(last.conversion), `first purchases, ${last.date}`, last.conversion),
      tile('sessions', integer.format(sessionCount), 'in the range', sessionCount),
      tile('average session', sessionCount ? duration(sessionSeconds / sessionCount) : '–', 'in the range'),
    ];
    $('kpi-tiles').replaceChildren(...tiles);
  }

  function definition() {
    return document.querySelector('input[name="retention"]:checked').value;
  }

  // Cohorts down, days since install across; a cell's shade is the share of its cohort.
  function renderRetention(report) {
    const table = $('retention');
    const cohorts = report.cohorts;
    $('retention-empty').hidden = cohorts.length > 0;
    // Days past the range's end are null in every cohort: the triangle stops at the range.
    const width = Math.max(0, ...cohorts.map((c) => c.strict.filter((n) => n != null).length));
    const head = el('tr');
    head.append(el('th', 'install day', 'name'), el('th', 'players', 'num'));
    for (let n = 0; n < width; n += 1) head.append(el('th', `D${n}`, 'num'));
    table.tHead.replaceChildren(head);
    const rows = table.tBodies[0];
    rows.textContent = '';
    const which = definition();
    for (const cohort of cohorts) {
      const row = rows.insertRow();
      row.dataset.cohort = cohort.date;
      row.append(el('td', cohort.date, 'name'), el('td', integer.format(cohort.size), 'num'));
      cohort[which].slice(0, width).forEach((players, n) => {
        const cell = el('td', undefined, 'num');
        cell.dataset.day = String(n);
        if (players == null || cohort.size === 0) {
          cell.classList.add('blank');
          if (players != null) cell.textContent = '–';
        } else {
          const share = cohort.size ? players / cohort.size : 0;
          cell.dataset.players = String(players);
          cell.textContent = percent.format(share);
          cell.title = `${players} of ${cohort.size}`;
          cell.style.backgroundColor = `rgba(76, 141, 255, ${(0.08 + 0.8 * share).toFixed(3)})`;
        }
        row.append(cell);
      });
    }
  }

  function renderLive(snapshot) {
    const rates = Object.entries(snapshot.eventsPerSecond);
    const rate = rates.reduce((total, [, r]) => total + r, 0);
    const total = Object.values(snapshot.totals).reduce((t, n) => t + n, 0);
    const excluded = Object.values(snapshot.excluded).reduce((t, n) => t + n, 0);
    const set = (id, text, value) => {
      $(id).textContent = text;
      $(id).dataset.value = String(value);
    };
    set('live-rate', decimal.format(rate), rate);
    set('live-concurrent', integer.format(snapshot.concurrentPlayers), snapshot.concurrentPlayers);
    set('live-today', integer.format(snapshot.playersToday), snapshot.playersToday);
    set('live-total', integer.format(total), total);
    set('live-excluded', integer.format(excluded), excluded);
    const rows = $('live-names').tBodies[0];
    rows.textContent = '';
    const byRate = new Map(rates);
    for (const [name, count] of Object.entries(snapshot.totals).sort((a, b) => b[1] - a[1])) {
      const row = rows.insertRow();
      row.dataset.event = name;
      row.append(
        el('td', name, 'name'),
        el('td', decimal.format(byRate.get(name) || 0), 'num'),
        el('td', integer.format(count), 'num'),
      );
      row.cells[2].dataset.value = String(count);
    }
    live.x.push(snapshot.atMs / 1000);
    live.rate.push(rate);
    live.concurrent.push(snapshot.concurrentPlayers);
    if (live.x.length > LIVE_POINTS) {
      for (const series of Object.values(live)) series.shift();
    }
    if (charts['live-chart']) {
      charts['live-chart'].setData([live.x, live.rate, live.concurrent]);
      $('live-chart').dataset.points = String(live.x.length);
    } else {
      drawLive();
    }
  }

  // --- loading ----------------------------------------------------------------------------------

  function reportFailed(error) {
    if (error instanceof Unauthorised) {
      signOut(error.message);
      return;
    }
    $('report-error').hidden = false;
    $('report-error').textContent = error.message;
  }

  async function loadReports() {
    clearTimeout(reportTimer);
    const mine = generation;
    const params = range();
    try {
      const [report, sessions] = await Promise.all([
        api('v1/admin/kpis', params),
        api('v1/admin/kpis/sessions', params),
      ]);
      if (mine !== generation) return;
      $('report-error').hidden = true;
      lastReport = report;
      renderKpis(report, sessions);
      drawActives(report.days);
      drawRevenue(report.days);
      renderRetention(report);
      await loadFunnel();
      $('updated').textContent = `Reports as of ${new Date().toLocaleTimeString()}; they refresh every minute.`;
    } catch (error) {
      if (mine === generation) reportFailed(error);
    }
    if (mine === generation) reportTimer = setTimeout(loadReports, REPORT_REFRESH_MS);
  }

  async function loadFunnel() {
    const params = {
      ...range(),
      steps: $('funnel-steps').value.replace(/\s+/g, ''),
      windowMinutes: $('funnel-window').value,
    };
    drawFunnel(await api('v1/admin/kpis/funnel', params));
  }

  function setMode(mode) {
    $('live').dataset.mode = mode;
    $('live-label').textContent = mode === 'stream' ? 'live' : mode;
  }

  // One Server-Sent Event block: its `event` and `data` fields.
  function parseEvent(block) {
    let event = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event = value;
      if (field === 'data') data.push(value);
    }
    return { event, data: data.join('\n') };
  }

  // The live stream. EventSource cannot send the admin key in a header, so the page reads the
  // same text/event-stream with fetch; it reconnects after a pause when the stream ends.
  async function streamLive() {
    const mine = generation;
    streamAbort = new AbortController();
    try {
      const response = await fetch('v1/admin/live/stream', {
        headers: { Authorization: `Bearer ${key}`, Accept: 'text/event-stream' },
        signal: streamAbort.signal,
        cache: 'no-store',
      });
      if (response.status === 401) throw new Unauthorised('admin key is invalid');
      if (!response.ok || !response.body) throw new Error(`live stream: HTTP ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done || mine !== generation) break;
        buffer += value.replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const { event, data } = parseEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (event === 'live') {
            setMode('stream');
            renderLive(JSON.parse(data));
          } else if (event === 'error') {
            setMode('retrying');
          }
        }
      }
    } catch (error) {
      if (error instanceof Unauthorised) {
        if (mine === generation) signOut(error.message);
        return;
      }
      if (error.name === 'AbortError') return;
    }
    if (mine !== generation) return;
    setMode('retrying');
    setTimeout(() => {
      if (mine === generation) streamLive();
    }, RETRY_STREAM_MS);
  }

  // Checks the key with one cheap call before showing anything.
  async function open() {
    try {
      await api('v1/admin/live');
    } catch (error) {
      if (error instanceof Unauthorised) {
        signOut(error.message);
      } else {
        showLogin(error.message);
      }
      return;
    }
    $('login').hidden = true;
    $('board').hidden = false;
    $('sign-out').hidden = false;
    setMode('connecting');
    streamLive();
    loadReports();
  }

  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    key = $('key').value;
    $('key').value = '';
    sessionStorage.setItem(KEY_STORAGE, key);
    generation += 1;
    open();
  });
  $('sign-out').addEventListener('click', () => signOut(''));
  $('range').addEventListener('submit', (event) => {
    event.preventDefault();
    if (key) loadReports();
  });
  $('funnel-form').addEventListener('submit', (event) => {
    event.preventDefault();
    if (key) loadFunnel().catch(reportFailed);
  });
  for (const input of document.querySelectorAll('input[name="retention"]')) {
    input.addEventListener('change', () => lastReport && renderRetention(lastReport));
  }
  window.addEventListener('resize', () => {
    for (const [id, chart] of Object.entries(charts)) chart.setSize({ width: chartWidth(id), height: 220 });
  });

  initialRange();
  if (key) open();
  else showLogin('');
})();
