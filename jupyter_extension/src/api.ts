// The two JSON routes of the openmind server extension (openmind/jupyter/server.py).
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
  duration_ms?: number;
  error?: string | null;
  attempts?: IAttempt[];
  cell?: { cell_id?: string | null; execution_count?: number | null; notebook?: string | null };
}

export interface IJournalPage {
  records: IDecision[];
  last_id: number | null;
}

/** An HTTP or network failure, with the server's message when it gave one. */
export class ApiError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

async function getJSON<T>(path: string, query: { [key: string]: string } = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  let url = URLExt.join(settings.baseUrl, 'openmind', 'api', path);
  const q = URLExt.objectToQueryString(query);
  if (q) {
    url += q;
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, {}, settings);
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
