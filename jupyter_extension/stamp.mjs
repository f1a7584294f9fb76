// Write a hash of the extension's sources next to the build, so a test (without Node) can tell
// whether the prebuilt labextension shipped in git was built from the sources in git.
// The same algorithm is in tests/test_sidebar_wheel.py (source_digest).
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const here = new URL('.', import.meta.url).pathname;
const roots = ['package.json', 'tsconfig.json', 'src', 'style', 'schema'];

function walk(path, out) {
  if (statSync(path).isDirectory()) {
    for (const name of readdirSync(path)) walk(join(path, name), out);
  } else {
    out.push(relative(here, path).split('\\').join('/'));
  }
}

const files = [];
for (const r of roots) walk(join(here, r), files);
files.sort();
const hash = createHash('sha256');
for (const f of files) {
  hash.update(f + '\0');
  hash.update(readFileSync(join(here, f)));
  hash.update('\0');
}
const out = join(here, '..', 'openmind', 'jupyter', 'labextension', 'source.sha256');
writeFileSync(out, hash.digest('hex') + '\n');
console.log(`source digest written to ${relative(process.cwd(), out)}`);
