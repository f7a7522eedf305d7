#!/usr/bin/env bash
# Checks Cargo.lock against the RustSec advisory database with cargo-audit (installed when
# missing). The database is a git repository: taken from GitHub when it answers, else from a
# local mirror of it (RUSTSEC_DB_MIRROR). A vulnerability fails the run. With no database
# reachable at all the check cannot run; that is said loudly, and the run goes on.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-audit >/dev/null 2>&1; then
  echo "ci: installing cargo-audit"
  cargo install --quiet --locked cargo-audit
fi

DB="$(mktemp -d)/advisory-db"
MIRROR="${RUSTSEC_DB_MIRROR:-/work/.mirror/rustsec+advisory-db/repo}"
if timeout 60 git clone --quiet --depth 1 https://github.com/rustsec/advisory-db.git "$DB" 2>/dev/null; then
  echo "ci: advisory database from GitHub"
elif [ -d "$MIRROR" ] && git clone --quiet "$MIRROR" "$DB" 2>/dev/null; then
  echo "ci: advisory database from the mirror $MIRROR ($(git -C "$DB" log -1 --format=%cs))"
else
  echo "ci: WARNING: no RustSec advisory database reachable (GitHub nor $MIRROR): advisories NOT checked"
  exit 0
fi
cargo audit --db "$DB" --no-fetch
