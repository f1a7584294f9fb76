// The sidebar widget: resource badges on top, the live list of cell decisions below.
import { JupyterFrontEnd } from '@jupyterlab/application';
import { LabIcon } from '@jupyterlab/ui-components';
import { Poll } from '@lumino/polling';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import {
  ApiError,
  evictMemory,
  fetchJournal,
  fetchMemory,
  fetchMeters,
  fetchResources,
  IDecision,
  IMemoryPage,
  IMeters,
  IResource,
  Resources
} from './api';

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 2C6.5 2 2 6.5 2 12s4.5 10 10 10 10-4.5 10-10S17.5 2 12 2zm0 2a8 8 0 1 1 0 16 8 8 0 0 1 0-16z"/>
    <path d="M6.5 12c1.2-2.4 2.4-2.4 3.6 0s2.4 2.4 3.6 0 2.4-2.4 3.8 0" fill="none" stroke="#616161" stroke-width="1.8" stroke-linecap="round" class="jp-icon3"/>
    <circle cx="12" cy="7.2" r="1.3"/><circle cx="12" cy="16.8" r="1.3"/>
  </g>
</svg>`;

export const openmindIcon = new LabIcon({ name: 'openmind:icon', svgstr: ICON_SVG });

/** Resource keys of `probe().to_dict()` in display order: the probe's names, shown as they are
 * (the same words as `%openmind status` and the journal), with what each one is on hover. */
const BADGES: [string, string][] = [
  ['host', 'this machine: CPU cores and RAM'],
  ['gpu', 'a CUDA GPU'],
  ['api', 'a language-model API (OpenAI-compatible) with its key'],
  ['infer', 'an inference endpoint (Open Inference Protocol)'],
  ['serial', 'an ESP32 answering on a serial port'],
  ['memory', 'muscle memory: the local cache of models, predictions and signal patterns']
];

export interface IPanelOptions {
  intervalSeconds: number;
  resourcesEvery: number;
  maxDecisions: number;
}

const DEFAULTS: IPanelOptions = { intervalSeconds: 3, resourcesEvery: 5, maxDecisions: 50 };
const MAX_BACKOFF_MS = 60_000;

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  cls?: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (cls) {
    node.className = cls;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function formatValue(value: unknown): string {
  if (value === null || value === undefined) {
    return '—';
  }
  if (typeof value === 'object') {
    const text = JSON.stringify(value);
    return text.length > 120 ? text.slice(0, 117) + '…' : text;
  }
  return String(value);
}

function clock(ts: number): string {
  return new Date(ts * 1000).toLocaleTimeString([], { hour12: false });
}

/** 948 B, 5.3 kB, 1.2 GB (powers of 1000, like the cards). */
export function humanBytes(n: number | undefined | null): string {
  if (n === undefined || n === null || !isFinite(n)) {
    return '?';
  }
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return i === 0 ? `${n.toFixed(0)} B` : `${parseFloat(n.toPrecision(3))} ${units[i]}`;
}

/** RAM as the resources badge and the cards say it: 512 MiB, 23.5 GiB (powers of 1024). */
export function humanRam(n: number | undefined | null): string {
  if (n === undefined || n === null || !isFinite(n)) {
    return '?';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n.toFixed(0)} B` : `${n.toFixed(1)} ${units[i]}`;
}

/** What names each kernel's meters: its notebook's file name; its whole path when another
 * kernel's notebook has the same file name; and the kernel's short id when even that is shared. */
export function kernelNames(kernels: { id: string; name: string; path: string }[]): string[] {
  const base = kernels.map(k => (k.path ? basename(k.path) : k.name || k.id.slice(0, 8)));
  const full = kernels.map((k, i) => (base.filter(x => x === base[i]).length > 1 && k.path ? k.path : base[i]));
  return full.map((f, i) => (full.filter(x => x === f).length > 1 ? `${f} · kernel ${kernels[i].id.slice(0, 4)}` : f));
}

function humanDuration(ms: number): string {
  if (ms < 1000) {
    return `${ms.toFixed(0)} ms`;
  }
  const s = ms / 1000;
  if (s < 60) {
    return `${s < 10 ? s.toFixed(1) : s.toFixed(0)} s`;
  }
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function ago(ts: number): string {
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 60) {
    return 'just now';
  }
  if (s < 3600) {
    return `${Math.round(s / 60)} min ago`;
  }
  if (s < 86400) {
    return `${Math.round(s / 3600)} h ago`;
  }
  return `${Math.round(s / 86400)} d ago`;
}

function plural(n: number, word: string, many?: string): string {
  return `${n} ${n === 1 ? word : many || word + 's'}`;
}

/** A labelled meter: a bar filled to `fraction` and the figures in words. */
function meter(label: string, fraction: number, text: string, tip: string): HTMLDivElement {
  const row = el('div', 'jp-openmind-meter');
  row.title = tip;
  const bar = el('div', 'jp-openmind-meter-bar');
  const fill = el('div', 'jp-openmind-meter-fill');
  const f = Math.max(0, Math.min(1, fraction || 0));
  fill.style.width = `${(f * 100).toFixed(1)}%`;
  if (f > 0.9) {
    fill.classList.add('jp-mod-high');
  }
  bar.append(fill);
  row.append(el('span', 'jp-openmind-meter-label', label), bar, el('span', 'jp-openmind-meter-text', text));
  return row;
}

function basename(path: string): string {
  const parts = path.split(/[\\/]/);
  return parts[parts.length - 1] || path;
}

/** A cell's model as far as the panel reads it (JupyterLab 4's ICodeCellModel). */
interface ICellModelLike {
  id: string;
  type?: string;
  executionState?: string;
  executionCount?: number | null;
  sharedModel?: { getSource?: () => string; source?: string };
  outputs?: { toJSON?: () => Array<{ output_type: string; ename?: string; evalue?: string }> };
}

/** The notebook widgets open in the main area, found by shape so no notebook package is needed. */
interface INotebookLike {
  id: string;
  context?: { path?: string; ready?: Promise<void> };
  content: {
    widgets: ReadonlyArray<{ model: ICellModelLike; node: HTMLElement }>;
    activeCellIndex: number;
    scrollToItem?: (index: number, align?: string) => Promise<void>;
    scrollToCell?: (cell: unknown) => Promise<void> | void;
  };
}

export class OpenmindPanel extends Widget {
  constructor(app: JupyterFrontEnd) {
    super();
    this._app = app;
    this.addClass('jp-openmind-panel');

    const header = el('div', 'jp-openmind-header');
    header.append(el('span', 'jp-openmind-title', 'openmind'));
    const refresh = el('button', 'jp-openmind-refresh jp-mod-styled', '↻');
    refresh.title = 'Re-probe the resources now';
    refresh.addEventListener('click', () => {
      this._refreshResources = true;
      void this._poll.refresh();
    });
    header.append(refresh);

    this._badges = el('div', 'jp-openmind-badges');
    this._meters = el('div', 'jp-openmind-meters');
    this._memory = el('div', 'jp-openmind-memory');
    this._cells = el('ol', 'jp-openmind-decisions jp-openmind-live');
    this._list = el('ol', 'jp-openmind-decisions');
    this._empty = el(
      'div',
      'jp-openmind-empty',
      'No decisions yet. Run a %%openmind cell and it appears here.'
    );
    this._status = el('div', 'jp-openmind-status', 'connecting…');

    this.node.append(
      header,
      el('h3', 'jp-openmind-section', 'Resources'),
      this._badges,
      el('h3', 'jp-openmind-section', 'Meters'),
      this._meters,
      el('h3', 'jp-openmind-section', 'Cell decisions'),
      this._cells,
      this._empty,
      this._list,
      el('h3', 'jp-openmind-section', 'Memory'),
      this._memory,
      this._status
    );

    this._poll = new Poll({
      auto: false,
      factory: () => this._tick(),
      frequency: this._frequency(),
      name: 'openmind:sidebar',
      // Pause while the panel is collapsed, and (built into Poll) while the browser tab is hidden.
      standby: () => !this.isVisible || 'when-hidden'
    });
    this._poll.ticked.connect((_, state) => {
      if (state.phase === 'rejected') {
        const wait = Math.round(state.interval / 1000);
        this._status.textContent = `${this._lastError} — retrying in ${wait}s`;
        this._status.classList.add('jp-mod-error');
      }
    });
    void this._poll.start();
  }

  /** Apply the user's settings (interval, how often to re-read resources, list length). */
  configure(options: Partial<IPanelOptions>): void {
    this._options = { ...this._options, ...options };
    this._poll.frequency = this._frequency();
    this._trim();
  }

  get options(): IPanelOptions {
    return { ...this._options };
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._poll.dispose();
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this._poll.refresh();
  }

  private _frequency() {
    return {
      interval: Math.max(1, this._options.intervalSeconds) * 1000,
      backoff: true,
      max: MAX_BACKOFF_MS
    };
  }

  private async _tick(): Promise<void> {
    try {
      const wantResources =
        this._refreshResources || this._ticks % Math.max(1, this._options.resourcesEvery) === 0;
      this._ticks++;
      const [page, resources, meters, memory] = await Promise.all([
        fetchJournal(this._lastId, this._options.maxDecisions),
        wantResources ? fetchResources() : Promise.resolve(null),
        fetchMeters().catch(err => {
          console.warn('openmind: meters unavailable', err);
          return null;
        }),
        wantResources ? fetchMemory() : Promise.resolve(null)
      ]);
      if (resources) {
        this._refreshResources = false;
        this._renderResources(resources);
      }
      if (meters) {
        this._renderMeters(meters);
      }
      if (memory) {
        this._renderMemory(memory);
      }
      if (page.glossary) {
        this._glossary = page.glossary;
      }
      this._addDecisions(page.records);
      this._scanCells();
      if (page.last_id !== null && page.last_id !== undefined) {
        this._lastId = page.last_id;
      }
      this._status.classList.remove('jp-mod-error');
      this._status.textContent = `updated ${clock(Date.now() / 1000)} · every ${this._options.intervalSeconds}s`;
    } catch (err) {
      this._lastError =
        err instanceof ApiError ? err.message : `error: ${(err as Error).message || err}`;
      throw err;
    }
  }

  private _renderResources(res: Resources): void {
    this._badges.textContent = '';
    for (const [key, what] of BADGES) {
      const label = key;
      const r = res[key] as IResource | undefined;
      if (!r || typeof r !== 'object') {
        continue;
      }
      const badge = el('div', 'jp-openmind-badge');
      badge.dataset.resource = key;
      badge.classList.add(r.available ? 'jp-mod-available' : 'jp-mod-absent');
      if (r.status === 'masked') {
        badge.classList.add('jp-mod-masked');
      }
      const top = el('div', 'jp-openmind-badge-top');
      top.append(el('span', 'jp-openmind-dot'), el('span', 'jp-openmind-badge-label', label));
      top.append(el('span', 'jp-openmind-badge-status', r.status));
      badge.append(top, el('div', 'jp-openmind-badge-reason', r.reason));
      const lines = [`${label} (${what}): ${r.available ? 'available' : 'absent'} (${r.status})`, r.reason];
      for (const [k, v] of Object.entries(r.details || {})) {
        lines.push(`${k}: ${formatValue(v)}`);
      }
      if (r.duration_ms !== undefined) {
        lines.push(`probed in ${r.duration_ms.toFixed(1)} ms`);
      }
      badge.title = lines.join('\n');
      this._badges.append(badge);
    }
  }

  private _addDecisions(records: IDecision[]): void {
    // records arrive oldest first; the list shows newest first
    for (const rec of records) {
      this._list.prepend(this._renderDecision(rec));
    }
    this._trim();
    this._showEmpty();
  }

  private _showEmpty(): void {
    this._empty.style.display = this._list.childElementCount + this._cells.childElementCount ? 'none' : '';
  }

  private _renderMeters(m: IMeters): void {
    this._meters.textContent = '';
    const cores = m.limits.cpu_cores;
    const ram = m.limits.ram_bytes;
    const cpuTip = `limit: ${cores} cores (${m.limits.cpu_from}); 100% = one core`;
    const ramTip = `limit: ${humanRam(ram)} (${m.limits.ram_from})`;
    const proc = (who: string, p: { cpu_percent?: number; rss_bytes?: number }, extra: string) => {
      const cpu = p.cpu_percent ?? 0;
      const head = el('div', 'jp-openmind-meter-who', who);
      head.title = extra.trim();
      this._meters.append(
        head,
        meter('CPU', cpu / 100 / cores, `${cpu.toFixed(0)}% of ${cores} cores`, `${extra}${cpuTip}`),
        meter('RAM', (p.rss_bytes ?? 0) / ram, `${humanRam(p.rss_bytes)} of ${humanRam(ram)}`, `${extra}${ramTip}`)
      );
    };
    proc('server', m.server, 'the Jupyter server process (without its kernels)\n');
    const names = kernelNames(m.kernels);
    m.kernels.forEach((k, i) => {
      const who = names[i];
      if (k.reason) {
        this._meters.append(el('div', 'jp-openmind-meter-none', `${who}: ${k.reason}`));
        return;
      }
      proc(who, k, `kernel ${k.name} ${k.id.slice(0, 8)} (${k.execution_state || '?'}) for ${k.path || k.id}, with its subprocesses\n`);
    });
    if (m.gpu.devices.length) {
      for (const g of m.gpu.devices) {
        const who = `GPU ${g.index}`;
        this._meters.append(
          meter(`${who} use`, g.gpu_percent / 100, `${g.gpu_percent}%`, g.name),
          meter(
            `${who} mem`,
            g.memory_used_bytes / g.memory_total_bytes,
            `${humanRam(g.memory_used_bytes)} of ${humanRam(g.memory_total_bytes)}`,
            g.name
          )
        );
      }
    } else {
      // why there is none is the gpu badge's to say (once); here it is a tooltip
      const none = el('div', 'jp-openmind-meter-none', /nvidia-ml-py/.test(m.gpu.reason || '') ? 'no GPU meter' : 'no GPU');
      none.title = m.gpu.reason || '';
      none.dataset.meter = 'gpu';
      this._meters.append(none);
    }
  }

  private _renderMemory(page: IMemoryPage): void {
    this._memory.textContent = '';
    const entries = page.entries;
    const total = entries.length
      ? `${plural(entries.length, 'entry', 'entries')} · ${humanBytes(page.bytes)}`
      : 'nothing cached yet';
    this._memory.append(el('div', 'jp-openmind-memory-total', total));
    const list = el('ul', 'jp-openmind-memory-list');
    for (const e of entries) {
      const item = el('li', 'jp-openmind-memory-entry');
      item.dataset.key = e.key;
      item.dataset.kind = e.kind;
      const what = el('span', 'jp-openmind-memory-what');
      what.append(el('span', 'jp-openmind-memory-kind', e.kind), document.createTextNode(' ' + e.name));
      const facts = el('span', 'jp-openmind-memory-facts', `${humanBytes(e.size)} · ${ago(e.used)}`);
      const evict = el('button', 'jp-openmind-evict jp-mod-styled', 'evict');
      evict.title = `remove ${e.kind} '${e.name}' from muscle memory (key ${e.key.slice(0, 12)}…); the next call computes it again`;
      evict.addEventListener('click', async ev => {
        ev.stopPropagation();
        evict.disabled = true;
        try {
          await evictMemory(e.key);
          item.remove();
          this._refreshResources = true;
          void this._poll.refresh();
        } catch (err) {
          evict.disabled = false;
          this._status.textContent = `could not evict: ${(err as Error).message}`;
        }
      });
      item.title =
        `${e.kind} '${e.name}'\n${humanBytes(e.size)}, used ${plural(e.hits, 'time')}, ` +
        `last ${new Date(e.used * 1000).toLocaleString()}\nstored ${new Date(e.created * 1000).toLocaleString()}`;
      item.append(what, facts, evict);
      list.append(item);
    }
    this._memory.append(list);
  }

  /** Cells of open notebooks that use openmind: running ones, and ones that failed, shown live
   * above the journal's decisions (a failure before any decision leaves no journal record). */
  private _scanCells(): void {
    const seen = new Set<string>();
    for (const nb of this._notebooks()) {
      let ahead = false; // cells run in order: the first "running" one runs, the others wait
      nb.content.widgets.forEach((cell, index) => {
        const model = cell.model;
        if (model.type !== undefined && model.type !== 'code') {
          return;
        }
        const src = model.sharedModel?.getSource?.() ?? model.sharedModel?.source ?? '';
        if (!/openmind/.test(src) || /^\s*%load_ext/.test(src)) {
          return;
        }
        const running = model.executionState === 'running';
        const outputs = model.outputs?.toJSON?.() ?? [];
        const error = outputs.find(o => o.output_type === 'error');
        if (!running && !error) {
          return;
        }
        seen.add(model.id);
        const state = running ? (ahead ? 'queued' : 'running') : 'failed';
        ahead = ahead || running;
        let item = this._cells.querySelector<HTMLLIElement>(`[data-cell-id="${model.id}"]`);
        if (!item || item.dataset.state !== state) {
          item?.remove();
          item = this._renderLiveCell(nb, index, src, state, error);
          this._cells.prepend(item);
        }
      });
    }
    for (const item of Array.from(this._cells.children) as HTMLElement[]) {
      if (!seen.has(item.dataset.cellId || '')) {
        item.remove();
      }
    }
    this._showEmpty();
  }

  private _renderLiveCell(
    nb: INotebookLike,
    index: number,
    src: string,
    state: string,
    error?: { ename?: string; evalue?: string }
  ): HTMLLIElement {
    const cell = nb.content.widgets[index];
    const item = el('li', `jp-openmind-decision jp-mod-${state} jp-mod-linked`);
    item.dataset.cellId = cell.model.id;
    item.dataset.state = state;
    const magic = /^\s*%%openmind\s+(\w+)/.exec(src);
    const top = el('div', 'jp-openmind-decision-top');
    top.append(
      el('span', 'jp-openmind-intent', magic ? `${magic[1]} cell` : 'openmind cell'),
      el('span', 'jp-openmind-state', state === 'running' ? 'running…' : state)
    );
    const path = nb.context?.path || '';
    // the prompt's own notation: [*] while it runs, then the number its decision will carry
    const count = cell.model.executionCount;
    const prompt = state === 'running' || count === null || count === undefined ? '[*]' : `[${count}]`;
    const where = el('div', 'jp-openmind-where', `${basename(path)} · ${prompt}`);
    const why = error
      ? `${error.ename}: ${error.evalue}`
      : state === 'queued'
        ? 'waiting for the cells above it'
        : 'running; its decision appears here when it is made';
    item.append(top, el('div', 'jp-openmind-reason', why), where);
    item.title = `${why}\n${path}\nclick: go to the cell`;
    item.tabIndex = 0;
    const go = () => void this.revealCell({ id: -1, ts: 0, intent: '', ok: false, cell: { cell_id: cell.model.id, path } });
    item.addEventListener('click', go);
    return item;
  }

  private _notebooks(): INotebookLike[] {
    const out: INotebookLike[] = [];
    for (const w of this._app.shell.widgets('main')) {
      const nb = w as unknown as INotebookLike;
      if (nb.content && Array.isArray(nb.content.widgets) && 'activeCellIndex' in nb.content) {
        out.push(nb);
      }
    }
    return out;
  }

  private _tip(word: string | null | undefined): string {
    return (word && this._glossary[word]) || '';
  }

  private _trim(): void {
    while (this._list.childElementCount > this._options.maxDecisions) {
      this._list.lastElementChild?.remove();
    }
  }

  private _renderDecision(rec: IDecision): HTMLLIElement {
    const item = el('li', 'jp-openmind-decision');
    item.dataset.id = String(rec.id);
    const degraded =
      rec.ok && rec.degraded ? (typeof rec.degraded === 'string' ? rec.degraded : 'not what was asked for') : '';
    const state = rec.state || (!rec.ok ? 'failed' : degraded ? 'degraded' : 'ok');
    item.classList.add(`jp-mod-${state}`);
    item.dataset.state = state;
    const cell = rec.cell || {};
    if (cell.cell_id) {
      item.dataset.cellId = cell.cell_id;
    }

    const top = el('div', 'jp-openmind-decision-top');
    top.append(
      el('span', 'jp-openmind-intent', rec.title || [rec.intent, rec.name].filter(Boolean).join(' ')),
      el('span', 'jp-openmind-time', clock(rec.ts))
    );
    const how = el('div', 'jp-openmind-how');
    if (rec.ok && rec.words) {
      how.append(el('span', 'jp-openmind-words', rec.words));
    }
    if (rec.ok && rec.pills !== false) {
      const pathway = el('span', 'jp-openmind-pathway', rec.pathway || '?');
      pathway.title = this._tip(rec.pathway) || this._tip('pathway');
      const kind = el('span', 'jp-openmind-decision-kind', rec.decision || '?');
      kind.title = this._tip(rec.decision);
      how.append(pathway, kind);
    }
    if (rec.ok && degraded) {
      const d = el('span', 'jp-openmind-state', 'degraded');
      d.title = degraded;
      how.append(d);
    }
    if (state === 'drift') {
      how.append(el('span', 'jp-openmind-state', 'drift'));
    }
    if (!rec.ok) {
      how.append(el('span', 'jp-openmind-pathway jp-mod-failed', 'all pathways failed'));
    }
    const reason = el(
      'div',
      'jp-openmind-reason',
      // why it is degraded first: a long reason must not push it past the cut
      [degraded ? `degraded: ${degraded}` : '', rec.reason || rec.error || ''].filter(Boolean).join(' · ')
    );
    reason.title = reason.textContent || '';
    const where = el('div', 'jp-openmind-where');
    const bits: string[] = [];
    if (cell.notebook) {
      bits.push(basename(cell.notebook));
    }
    if (cell.execution_count !== null && cell.execution_count !== undefined) {
      bits.push(`[${cell.execution_count}]`);
    }
    if (rec.duration_ms !== undefined) {
      bits.push(humanDuration(rec.duration_ms));
    }
    where.textContent = bits.join(' · ');
    item.append(top, how, reason, where);

    const tries = (rec.attempts || [])
      .map(a => `${a.outcome === 'ok' ? '✓' : '✗'} ${a.pathway}/${a.decision}${a.error ? ': ' + a.error : ''}`)
      .join('\n');
    item.title = [
      `${rec.title || rec.intent + (rec.name ? ' ' + rec.name : '')} at ${new Date(rec.ts * 1000).toLocaleString()}`,
      cell.notebook ? `notebook: ${cell.notebook}` : '',
      rec.reason || '',
      degraded ? `degraded: ${degraded}` : '',
      tries ? `attempts:\n${tries}` : '',
      cell.cell_id ? 'click: go to the cell' + (cell.path ? ' (opens the notebook if closed)' : '') : ''
    ]
      .filter(Boolean)
      .join('\n');
    if (cell.cell_id) {
      item.classList.add('jp-mod-linked');
      item.tabIndex = 0;
      const go = () => void this.revealCell(rec);
      item.addEventListener('click', go);
      item.addEventListener('keydown', ev => {
        if (ev.key === 'Enter') {
          go();
        }
      });
    }
    return item;
  }

  /** Scroll to and select the decision's cell if its notebook is open; returns whether it was. */
  async revealCell(rec: IDecision): Promise<boolean> {
    const cellId = rec.cell?.cell_id;
    if (!cellId) {
      return false;
    }
    const wanted = rec.cell?.path || rec.cell?.notebook || '';
    if (await this._goTo(cellId, wanted)) {
      return true;
    }
    const path = rec.cell?.path;
    if (path) {
      // the notebook is closed: open it, wait until its cells are there, then go to the cell
      try {
        const widget = (await this._app.commands.execute('docmanager:open', { path })) as INotebookLike;
        await widget?.context?.ready;
        for (let i = 0; i < 50; i++) {
          if (await this._goTo(cellId, path)) {
            return true;
          }
          await new Promise(r => setTimeout(r, 100));
        }
      } catch (err) {
        this._status.textContent = `could not open ${path}: ${(err as Error).message}`;
        return false;
      }
    }
    this._status.textContent = path
      ? `${basename(path)} no longer has that cell`
      : 'that cell is not open in any notebook';
    return false;
  }

  private async _goTo(cellId: string, wanted: string): Promise<boolean> {
    const notebooks = this._notebooks();
    const samePath = (nb: INotebookLike) => {
      const p = nb.context?.path;
      return !!p && !!wanted && (wanted === p || wanted.endsWith('/' + p));
    };
    // the decision's own notebook first, then any open notebook holding that cell id
    notebooks.sort((a, b) => Number(samePath(b)) - Number(samePath(a)));
    for (const nb of notebooks) {
      const index = nb.content.widgets.findIndex(c => c.model.id === cellId);
      if (index < 0) {
        continue;
      }
      this._app.shell.activateById(nb.id);
      nb.content.activeCellIndex = index;
      const cell = nb.content.widgets[index];
      if (nb.content.scrollToItem) {
        await nb.content.scrollToItem(index, 'center');
      } else if (nb.content.scrollToCell) {
        await nb.content.scrollToCell(cell);
      }
      cell.node.classList.add('jp-openmind-flash');
      setTimeout(() => cell.node.classList.remove('jp-openmind-flash'), 1500);
      return true;
    }
    return false;
  }

  private _app: JupyterFrontEnd;
  private _badges: HTMLDivElement;
  private _meters: HTMLDivElement;
  private _memory: HTMLDivElement;
  private _cells: HTMLOListElement;
  private _glossary: { [word: string]: string } = {};
  private _list: HTMLOListElement;
  private _empty: HTMLDivElement;
  private _status: HTMLDivElement;
  private _poll: Poll;
  private _options: IPanelOptions = { ...DEFAULTS };
  private _lastId: number | null = null;
  private _ticks = 0;
  private _refreshResources = true;
  private _lastError = '';
}
