// Runs every graphql-http server audit against a GraphQL endpoint and prints one line per
// audit, then a JSON summary on the last line.
//
//   node run_audits.mjs <url> [--authorization "Bearer <key>"]
//
// Exits 1 when a MUST or SHOULD audit fails, 0 otherwise (MAY audits are reported only).
import { serverAudits } from 'graphql-http';

function parseArgs(argv) {
  const [url, ...rest] = argv;
  if (!url) {
    throw new Error('usage: node run_audits.mjs <url> [--authorization VALUE]');
  }
  let authorization = null;
  for (let i = 0; i < rest.length; i += 1) {
    if (rest[i] === '--authorization') {
      authorization = rest[i + 1];
      i += 1;
    } else {
      throw new Error(`unknown argument: ${rest[i]}`);
    }
  }
  return { url, authorization };
}

function fetchWith(authorization) {
  if (!authorization) {
    return fetch;
  }
  return (input, init = {}) => {
    const headers = new Headers(init.headers);
    headers.set('authorization', authorization);
    return fetch(input, { ...init, headers });
  };
}

const { url, authorization } = parseArgs(process.argv.slice(2));
const audits = serverAudits({ url, fetchFn: fetchWith(authorization) });
const results = [];
for (const audit of audits) {
  const result = await audit.fn();
  const requirement = audit.name.split(' ')[0];
  const line = { id: audit.id, requirement, name: audit.name, ok: result.status === 'ok' };
  if (!line.ok) {
    line.reason = result.reason;
  }
  results.push(line);
  const outcome = line.ok ? 'ok' : `fail ${line.reason}`;
  console.log(`${line.id} ${requirement} ${outcome} — ${audit.name}`);
}

const count = (requirement, ok) =>
  results.filter((r) => r.requirement === requirement && r.ok === ok).length;
const summary = {
  url,
  authorization: Boolean(authorization),
  total: results.length,
  passed: results.filter((r) => r.ok).length,
  failed: results.filter((r) => !r.ok).map((r) => r.id),
  MUST: { ok: count('MUST', true), fail: count('MUST', false) },
  SHOULD: { ok: count('SHOULD', true), fail: count('SHOULD', false) },
  MAY: { ok: count('MAY', true), fail: count('MAY', false) },
  results,
};
console.log(JSON.stringify(summary));
process.exitCode = summary.MUST.fail + summary.SHOULD.fail > 0 ? 1 : 0;
