// The sidebar widget: resource badges on top, the live list of cell decisions below.
import { JupyterFrontEnd } from '@jupyterlab/application';
import { LabIcon } from '@jupyterlab/ui-components';
import { Poll } from '@lumino/polling';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { ApiError, fetchJournal, fetchResources, IDecision, IResource, Resources } from './api';

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 2C6.5 2 2 6.5 2 12s4.5 10 10 10 10-4.5 10-10S17.5 2 12 2zm0 2a8 8 0 1 1 0 16 8 8 0 0 1 0-16z"/>
    <path d="M6.5 12c1.2-2.4 2.4-2.4 3.6 0s2.4 2.4 3.6 0 2.4-2.4 3.8 0" fill="none" stroke="#616161" stroke-width="1.8" stroke-linecap="round" class="jp-icon3"/>
    <circle cx="12" cy="7.2" r="1.3"/><circle cx="12" cy="16.8" r="1.3"/>
  </g>
</svg>`;

export const openmindIcon = new LabIcon({ name: 'openmind:icon', svgstr: ICON_SVG });

/** Resource keys of `probe().to_dict()` in display order, with their badge labels. */
const BADGES: [string, string][] = [
  ['gpu', 'GPU'],
  ['api', 'API'],
  ['infer', 'Cloud'],
  ['serial', 'ESP32'],
  ['memory', 'Memory'],
  ['host', 'Host']
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

function basename(path: string): string {
  const parts = path.split(/[\\/]/);
  return parts[parts.length - 1] || path;
}

/** The notebook widgets open in the main area, found by shape so no notebook package is needed. */
interface INotebookLike {
  id: string;
  context?: { path?: string };
  content: {
    widgets: ReadonlyArray<{ model: { id: string }; node: HTMLElement }>;
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
      el('h3', 'jp-openmind-section', 'Cell decisions'),
      this._empty,
      this._list,
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
      const [page, resources] = await Promise.all([
        fetchJournal(this._lastId, this._options.maxDecisions),
        wantResources ? fetchResources() : Promise.resolve(null)
      ]);
      if (resources) {
        this._refreshResources = false;
        this._renderResources(resources);
      }
      this._addDecisions(page.records);
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
    for (const [key, label] of BADGES) {
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
      const lines = [`${label}: ${r.available ? 'available' : 'absent'} (${r.status})`, r.reason];
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
    this._empty.style.display = this._list.childElementCount ? 'none' : '';
  }

  private _trim(): void {
    while (this._list.childElementCount > this._options.maxDecisions) {
      this._list.lastElementChild?.remove();
    }
  }

  private _renderDecision(rec: IDecision): HTMLLIElement {
    const item = el('li', 'jp-openmind-decision');
    item.dataset.id = String(rec.id);
    item.classList.add(rec.ok ? 'jp-mod-ok' : 'jp-mod-failed');
    const cell = rec.cell || {};
    if (cell.cell_id) {
      item.dataset.cellId = cell.cell_id;
    }

    const top = el('div', 'jp-openmind-decision-top');
    top.append(
      el('span', 'jp-openmind-intent', [rec.intent, rec.name].filter(Boolean).join(' ')),
      el('span', 'jp-openmind-time', clock(rec.ts))
    );
    const how = el('div', 'jp-openmind-how');
    if (rec.ok) {
      how.append(
        el('span', 'jp-openmind-pathway', rec.pathway || '?'),
        el('span', 'jp-openmind-decision-kind', rec.decision || '?')
      );
    } else {
      how.append(el('span', 'jp-openmind-pathway jp-mod-failed', 'all pathways failed'));
    }
    const reason = el('div', 'jp-openmind-reason', rec.reason || rec.error || '');
    const where = el('div', 'jp-openmind-where');
    const bits: string[] = [];
    if (cell.notebook) {
      bits.push(basename(cell.notebook));
    }
    if (cell.execution_count !== null && cell.execution_count !== undefined) {
      bits.push(`[${cell.execution_count}]`);
    }
    if (rec.duration_ms !== undefined) {
      bits.push(`${rec.duration_ms < 1000 ? rec.duration_ms.toFixed(0) + ' ms' : (rec.duration_ms / 1000).toFixed(1) + ' s'}`);
    }
    where.textContent = bits.join(' · ');
    item.append(top, how, reason, where);

    const tries = (rec.attempts || [])
      .map(a => `${a.outcome === 'ok' ? '✓' : '✗'} ${a.pathway}/${a.decision}${a.error ? ': ' + a.error : ''}`)
      .join('\n');
    item.title = [
      `${rec.intent}${rec.name ? ' ' + rec.name : ''} at ${new Date(rec.ts * 1000).toLocaleString()}`,
      cell.notebook ? `notebook: ${cell.notebook}` : '',
      rec.reason || '',
      tries ? `attempts:\n${tries}` : '',
      cell.cell_id ? 'click: go to the cell' : ''
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
    const wanted = rec.cell?.notebook || '';
    const notebooks: INotebookLike[] = [];
    for (const w of this._app.shell.widgets('main')) {
      const nb = w as unknown as INotebookLike;
      if (nb.content && Array.isArray(nb.content.widgets) && 'activeCellIndex' in nb.content) {
        notebooks.push(nb);
      }
    }
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
    this._status.textContent = 'that cell is not open in any notebook';
    return false;
  }

  private _app: JupyterFrontEnd;
  private _badges: HTMLDivElement;
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
