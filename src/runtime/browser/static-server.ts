/** A tiny static HTTP server on 127.0.0.1 with the cross-origin isolation headers WebGPU/wasm threads need. */
import { createReadStream, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, sep } from 'node:path';

const MIME_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.data': 'application/octet-stream',
  '.bin': 'application/octet-stream',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.map': 'application/json; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** The MIME type served for `path` (by extension). */
export function mimeTypeOf(path: string): string {
  return MIME_TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream';
}

/** What the server serves: URL prefixes mapped to folders, and in-memory files by exact URL path. */
export interface ServeSpec {
  /** URL prefix (e.g. '/ort/') → folder on disk. */
  directories?: Record<string, string>;
  /** Exact URL path (e.g. '/model.onnx') → bytes or text. */
  files?: Record<string, Uint8Array | string>;
}

/** A running server; `url(path)` builds an absolute URL on it. */
export interface StaticServer {
  readonly origin: string;
  url(path: string): string;
  /** Adds or replaces an in-memory file. */
  setFile(path: string, body: Uint8Array | string): void;
  close(): Promise<void>;
}

const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cache-Control': 'no-store',
};

/** Resolves `rest` inside `root`, or undefined when it would escape it. */
function inside(root: string, rest: string): string | undefined {
  const path = normalize(join(root, rest));
  return path === normalize(root) || path.startsWith(normalize(root) + sep) ? path : undefined;
}

/** Starts a server on 127.0.0.1 at a free port. */
export async function startStaticServer(spec: ServeSpec): Promise<StaticServer> {
  const files = new Map(Object.entries(spec.files ?? {}));
  // Longest prefix first, so '/ort/' wins over '/'.
  const directories = Object.entries(spec.directories ?? {}).sort((a, b) => b[0].length - a[0].length);
  const server: Server = createServer((request, response) => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://127.0.0.1').pathname);
    const send = (status: number, type: string, body?: Uint8Array | string): void => {
      response.writeHead(status, { ...ISOLATION_HEADERS, 'Content-Type': type });
      response.end(body);
    };
    const filePath = path.endsWith('/') ? `${path}index.html` : path;
    const memory = files.get(filePath);
    if (memory !== undefined) return send(200, mimeTypeOf(filePath), memory);
    for (const [prefix, root] of directories) {
      if (!path.startsWith(prefix)) continue;
      let file = inside(root, path.slice(prefix.length));
      if (file === undefined) return send(403, 'text/plain', 'forbidden');
      try {
        if (statSync(file).isDirectory()) file = join(file, 'index.html');
        const size = statSync(file).size;
        response.writeHead(200, { ...ISOLATION_HEADERS, 'Content-Type': mimeTypeOf(file), 'Content-Length': size });
        createReadStream(file).pipe(response);
        return;
      } catch {
        continue;
      }
    }
    // The browser asks for a favicon on its own; a 404 there would show up as a console error of the page.
    if (path === '/favicon.ico') return send(204, 'image/x-icon');
    send(404, 'text/plain', `not found: ${path}`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    url: (path) => `${origin}${path.startsWith('/') ? path : `/${path}`}`,
    setFile: (path, body) => void files.set(path, body),
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
