#!/usr/bin/env bash
# The npm package, as a user gets it: packs js/ (its prepack step bundles the component and its bindings),
# checks the tarball, installs it from the tarball into a scratch project and runs a smoke test there:
# createStore with no component (the bundled one), a session created, saved, loaded back, deleted.
#
#   js/scripts/pack-smoke.sh DATABASE_URL
#
# DATABASE_URL: a migrated database (migrations/), as a role that can read and write
# wasm_sessions.sessions. Needs Node.js 20+, npm, js/node_modules (`npm ci` in js/; installed here when
# missing) and the component the Rust crate ships, host/component/session-store.wasm. Everything it
# writes lives in a temporary directory removed on exit; js/component/ (ignored by git) is removed again
# unless it was there before.
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
  echo "usage: $0 DATABASE_URL   (a migrated database; a role that can read and write wasm_sessions.sessions)" >&2
  exit 2
fi
database_url=$1

js=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
repo=$(dirname "$js")
component="$repo/host/component/session-store.wasm"
if [[ ! -f "$component" ]]; then
  echo "pack-smoke: $component is missing (the Rust crate ships it; the prepack step bundles it)" >&2
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wasm-sessions-pack-smoke.XXXXXX")
had_component_dir=0
[[ -e "$js/component" ]] && had_component_dir=1
git_status() { git -C "$repo" status --porcelain --untracked-files=all -- js .gitignore 2>/dev/null || true; }
status_before=$(git_status)
cleanup() {
  rm -rf "$tmp"
  if [[ $had_component_dir == 0 ]]; then
    rm -rf "$js/component"
  fi
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

cd "$js"
if [[ ! -d node_modules/@bytecodealliance/jco ]]; then
  step "installing js/node_modules (npm ci): the prepack step transpiles with jco"
  npm ci --prefer-offline --no-audit --no-fund --loglevel=error
fi

step "npm pack (prepack bundles $component)"
npm pack --pack-destination "$tmp" --loglevel=warn
tarballs=("$tmp"/*.tgz)
if [[ ${#tarballs[@]} -ne 1 || ! -f "${tarballs[0]}" ]]; then
  echo "pack-smoke: expected one tarball in $tmp, found: ${tarballs[*]}" >&2
  exit 1
fi
tarball=${tarballs[0]}

step "checking $(basename "$tarball")"
tar -tzf "$tarball" | sort >"$tmp/contents.txt"
require() {
  if ! grep -Eq "$1" "$tmp/contents.txt"; then
    echo "pack-smoke: the tarball has no $2 (pattern $1); it holds:" >&2
    cat "$tmp/contents.txt" >&2
    exit 1
  fi
}
require '^package/package\.json$' 'package.json'
require '^package/src/index\.js$' 'src/index.js'
require '^package/src/index\.d\.ts$' 'src/index.d.ts'
require '^package/src/guest-worker\.js$' 'src/guest-worker.js'
require '^package/component/session-store\.wasm$' 'component/session-store.wasm'
require '^package/component/transpiled/guest\.js$' 'component/transpiled/guest.js'
require '^package/component/transpiled/[^/]+\.wasm$' 'core module in component/transpiled/'
require '^package/component/transpiled/jco-options\.json$' 'component/transpiled/jco-options.json'
if grep -Eq '^package/(test|scripts|node_modules)/' "$tmp/contents.txt"; then
  echo "pack-smoke: the tarball holds files that are not the package's:" >&2
  grep -E '^package/(test|scripts|node_modules)/' "$tmp/contents.txt" >&2
  exit 1
fi
if ! cmp -s <(tar -xzOf "$tarball" package/component/session-store.wasm) "$component"; then
  echo "pack-smoke: the bundled component differs from $component" >&2
  exit 1
fi
files=$(wc -l <"$tmp/contents.txt")
size=$(wc -c <"$tarball")
echo "$(basename "$tarball"): $size bytes, $files files"
sed 's/^/  /' "$tmp/contents.txt"

step "a scratch project installs the tarball"
app="$tmp/app"
mkdir "$app"
cd "$app"
npm init -y >/dev/null
npm pkg set type=module
if ! npm install --offline --no-audit --no-fund --loglevel=error "$tarball"; then
  echo "pack-smoke: npm install --offline failed (a dependency is not in npm's cache);" \
    "retrying with --prefer-offline, which may use the registry" >&2
  npm install --prefer-offline --no-audit --no-fund --loglevel=error "$tarball"
fi
npm ls --all --loglevel=error | sed 's/^/  /'
if [[ -e node_modules/@bytecodealliance/jco ]]; then
  echo "pack-smoke: jco was installed, but it is an optional peer dependency the package does not need" >&2
  exit 1
fi

cat >smoke.mjs <<'EOF'
import assert from 'node:assert/strict';
import path from 'node:path';

import { StoreError, bundledComponentDir, createStore, transpileComponent } from '@wasm-sessions/node';

const url = process.env.PACK_SMOKE_DATABASE_URL;

// The bindings `npm pack` bundled, in the installed package.
const dir = bundledComponentDir();
assert.ok(dir !== null, 'the installed package bundles the component');
assert.ok(
  dir.includes(path.join('node_modules', '@wasm-sessions', 'node', 'component', 'transpiled')),
  `bundled bindings at ${dir}`,
);

// jco is an optional peer dependency, not installed here: transpiling at run time says what to do.
await assert.rejects(transpileComponent(new Uint8Array(8)), /needs @bytecodealliance\/jco/);

// No component: the bundled one.
const first = await createStore({ connection: url });
let id;
try {
  const session = await first.newSession();
  session.set('smoke', { from: 'npm pack', n: 1 });
  await first.save(session);
  assert.equal(session.isSaved, true);
  id = session.id;
} finally {
  await first.close();
}

const second = await createStore({ connection: url });
try {
  const loaded = await second.load(id);
  assert.deepEqual(loaded.get('smoke'), { from: 'npm pack', n: 1 });
  assert.equal(typeof loaded.version, 'bigint');
  assert.equal(await second.delete(id), true);
  await assert.rejects(second.load(id), (error) => error instanceof StoreError && error.code === 'not-found');
} finally {
  await second.close();
}
console.log('npm package smoke test passed');
EOF

# The types, resolved through the package's `exports` as a TypeScript user's project would (when a
# TypeScript compiler is at hand: jco brings one into js/node_modules).
tsc="$js/node_modules/.bin/tsc"
if [[ -x "$tsc" ]]; then
  step "type-checking a use of the installed package ($("$tsc" --version))"
  cat >smoke.ts <<'EOF'
import { createStore, type Session, type Store } from '@wasm-sessions/node';

export async function roundTrip(url: string): Promise<bigint> {
  const store: Store = await createStore({ connection: url, config: { sameSite: 'lax' } });
  const session: Session = await store.newSession({ mode: 'on-inactivity', seconds: 60 });
  session.set('n', 1);
  await store.save(session);
  const loaded = await store.load(session.id);
  const n: number | undefined = loaded.get<number>('n');
  await store.close();
  return loaded.expiresAt + BigInt(n ?? 0);
}
EOF
  cat >tsconfig.json <<'EOF'
{
  "compilerOptions": {
    "strict": true,
    "noEmit": true,
    "target": "es2022",
    "module": "nodenext",
    "moduleResolution": "nodenext",
    "lib": ["es2022", "dom"],
    "types": []
  },
  "files": ["smoke.ts"]
}
EOF
  "$tsc" -p tsconfig.json
  echo "types resolve through the package's exports"
else
  step "type check skipped: no TypeScript compiler in js/node_modules"
fi

step "smoke test (node smoke.mjs in the scratch project; tarball $size bytes, $files files)"
PACK_SMOKE_DATABASE_URL=$database_url node smoke.mjs

# The tree as found: the scratch project and js/component/ gone, nothing new under js/.
cd "$js"
cleanup
trap - EXIT
status_after=$(git_status)
if [[ "$status_before" != "$status_after" ]]; then
  echo "pack-smoke: git status of js/ changed:" >&2
  diff <(echo "$status_before") <(echo "$status_after") >&2 || true
  exit 1
fi
