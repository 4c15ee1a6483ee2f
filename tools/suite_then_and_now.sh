#!/usr/bin/env bash
# The full test suite now against the suite when issue #25 was filed (commit 530591f, 419
# tests, its own README command), one after the other on this machine, with the same
# environment (.venv, FEDLEARN_DATA, CI=1): prints each wall time and their ratio.
# Run it alone (about 30 minutes on 2 cores); docs/tests.md gives the figures it printed.
# PYTEST_ARGS is added to both commands (e.g. -x).
set -euo pipefail
cd "$(dirname "$0")/.."
THEN=${THEN:-530591f}
export FEDLEARN_DATA="${FEDLEARN_DATA:-$(cd .. && pwd)/shared/datasets/mnist}"
export MPLBACKEND=Agg CI=1 PATH="$PWD/.venv/bin:$PATH"
work=$(mktemp -d "${TMPDIR:-/tmp}/stn.XXXX")  # short paths: see timed()
trap 'git worktree remove --force "$work/then" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach "$work/then" "$THEN" >/dev/null

command_of() {  # the test command a README.md gives (as .ci/run reads it)
  awk '/<!-- test-command/ {found=1; next} found && /^```/ {if (inblock) exit; inblock=1; next}
       found && inblock && NF {print; exit}' "$1"
}

timed() {  # DIR: run DIR's README command there, fedlearn imported from DIR; its wall seconds
  local dir=$1 start
  start=$(date +%s)
  # a short TMPDIR: Ray's socket paths under it must stay within AF_UNIX's 107 bytes
  (cd "$dir" && export TMPDIR="$work/t$(date +%N | cut -c1-3)" PYTHONPATH="$dir" && mkdir -p "$TMPDIR" \
      && eval "$(command_of "$dir/README.md") ${PYTEST_ARGS:-}") >&2 \
    || echo "(some tests failed in $dir: see above)" >&2
  echo $(($(date +%s) - start))
}

then_s=$(timed "$work/then")
now_s=$(timed "$PWD")
python3 -c "import sys; t, n = map(int, sys.argv[1:3]); print(f'then ({sys.argv[3]}, its \
README command): {t} s'); print(f'now  ({sys.argv[4]}): {n} s'); print(f'now / then: {n / t:.2f}')" \
  "$then_s" "$now_s" "$THEN" "$(git rev-parse --short HEAD)"
