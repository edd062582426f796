// Types of checkpoint_server.mjs for the TypeScript specs that import it.
import type {IncomingMessage, ServerResponse} from 'node:http';

export interface CheckpointServerOptions {
  /** A folder to serve (files under it, by their relative path). */
  root?: string;
  /** In-memory files (name → bytes), looked up before root. */
  files?: ReadonlyMap<string, Uint8Array>;
  /** Default true; false ignores Range and sends the whole file with 200. */
  supportRange?: boolean;
  /** Default '127.0.0.1'. */
  host?: string;
  /** Default 0 (any free port). */
  port?: number;
  /** name → bytes: the body of that file is cut after this many bytes (headers announce the full length). */
  truncate?: Record<string, number>;
  /** A delay before each response, in ms. */
  latencyMs?: number;
}

export interface CheckpointRequest {
  method: string;
  path: string;
  range: string|null;
  status: number;
  /** Body bytes sent (0 for HEAD). */
  bytes: number;
}

export interface CheckpointServer {
  /** 'http://127.0.0.1:PORT/' */
  url: string;
  port: number;
  stats: {requests: CheckpointRequest[], bytesSent: number};
  close(): Promise<void>;
}

export function startCheckpointServer(options?: CheckpointServerOptions): Promise<CheckpointServer>;
export function parseRange(header: string, size: number): [number, number]|'unsatisfiable'|null;
export function serveFile(req: IncomingMessage, res: ServerResponse, name: string, bytes: Uint8Array|null,
                          opts?: {supportRange?: boolean, truncateTo?: number, cors?: boolean}):
    {status: number, bytes: number};
export function requestName(url: string|undefined): string|null;
export function readUnder(root: string, name: string): Promise<Uint8Array|null>;
