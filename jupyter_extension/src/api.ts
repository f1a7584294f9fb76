// The JSON routes of the openmind server extension (openmind/jupyter/server.py).
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** One resource as `openmind.probe().to_dict()` gives it. */
export interface IResource {
  available: boolean;
  status: string;
  reason: string;
  details: { [key: string]: unknown };
  probed_at?: number;
  duration_ms?: number;
}

export type Resources = { taken_at?: number } & { [name: string]: IResource | number | undefined };

/** One attempt of one candidate pathway. */
export interface IAttempt {
  pathway: string;
  decision: string;
  reason?: string;
  outcome: string;
  error?: string | null;
  duration_ms?: number;
}

/** One journal record (a cell decision). */
export interface IDecision {
  id: number;
  ts: number;
  intent: string;
  name?: string | null;
  pathway?: string | null;
  decision?: string | null;
  reason?: string | null;
  ok: boolean;
  degraded?: string | boolean | null;
  /** what the server's words make of it: `cell → clf, preds`, plain words, ok/degraded/drift/failed */
  title?: string;
  words?: string | null;
  state?: string;
  pills?: boolean;
  duration_ms?: number;
  error?: string | null;
  attempts?: IAttempt[];
  cell?: {
    cell_id?: string | null;
    execution_count?: number | null;
    notebook?: string | null;
    /** the notebook's path under the server root (what `docmanager:open` takes), after renames */
    path?: string | null;
  };
}

export interface IJournalPage {
  records: IDecision[];
  last_id: number | null;
  /** short explanations of the vocabulary (pathways, decisions), on the first page */
  glossary?: { [word: string]: string } | null;
}

/** An HTTP or network failure, with the server's message when it gave one. */
export class ApiError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

async function getJSON<T>(
  path: string,
  query: { [key: string]: string } = {},
  method = 'GET'
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  let url = URLExt.join(settings.baseUrl, 'openmind', 'api', path);
  const q = URLExt.objectToQueryString(query);
  if (q) {
    url += q;
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, { method }, settings);
  } catch (err) {
    throw new ApiError(`server unreachable (${(err as Error).message})`, 0);
  }
  const text = await response.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const why = (data && (data.message || data.reason)) || response.statusText;
    throw new ApiError(`${path}: HTTP ${response.status} ${why}`, response.status);
  }
  return data as T;
}

export function fetchResources(): Promise<Resources> {
  return getJSON<Resources>('resources');
}

export function fetchJournal(after: number | null, limit: number): Promise<IJournalPage> {
  const query: { [key: string]: string } = { limit: String(limit) };
  if (after !== null) {
    query.after = String(after);
  }
  return getJSON<IJournalPage>('journal', query);
}

/** One muscle-memory entry (`GET /openmind/api/memory`). */
export interface IMemoryEntry {
  key: string;
  kind: string;
  name: string;
  size: number;
  used: number;
  created: number;
  hits: number;
}

export interface IMemoryPage {
  entries: IMemoryEntry[];
  bytes: number;
}

export interface IProcessMeter {
  pid?: number | null;
  cpu_percent?: number;
  rss_bytes?: number;
}

export interface IKernelMeter extends IProcessMeter {
  id: string;
  name: string;
  path: string;
  execution_state?: string | null;
  reason?: string | null;
}

export interface IGpuMeter {
  index: number;
  name: string;
  gpu_percent: number;
  memory_used_bytes: number;
  memory_total_bytes: number;
}

/** `GET /openmind/api/meters`: the server and kernels against their limits, and the GPU. */
export interface IMeters {
  ts: number;
  limits: { cpu_cores: number; cpu_from: string; ram_bytes: number; ram_from: string };
  server: IProcessMeter;
  kernels: IKernelMeter[];
  gpu: { devices: IGpuMeter[]; reason: string | null };
}

export function fetchMemory(): Promise<IMemoryPage> {
  return getJSON<IMemoryPage>('memory');
}

export function fetchMeters(): Promise<IMeters> {
  return getJSON<IMeters>('meters');
}

/** Evict one muscle-memory entry by its whole key. */
export function evictMemory(key: string): Promise<{ removed: number }> {
  return getJSON<{ removed: number }>(`memory/${encodeURIComponent(key)}`, {}, 'DELETE');
}
