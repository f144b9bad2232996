#!/usr/bin/env bash
# Fresh installs side by side: for each git revision given, a clean clone, `scripts/install.sh [OPTIONS]` into a new
# environment with an empty model cache, then the README's first job (`visrec demo --sample`). Prints seconds for
# the install, the first demo and both, the environment's size, and the load average before and after each run.
#
# Usage: bash benchmarks/install_time.sh [--dev] REV [REV...]      e.g.  bash benchmarks/install_time.sh 7195077 HEAD
# Uses pip's cache like a second install on the same machine would; everything is written under a temporary folder
# that is deleted at the end. Run the revisions in both orders when the machine is shared: the load drifts.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
opts=()
[[ "${1:-}" == "--dev" ]] && { opts=(--dev); shift; }
[[ $# -gt 0 ]] || { sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }
work="$(mktemp -d "${TMPDIR:-/tmp}/visrec-install-time.XXXXXX")"
trap 'rm -rf "$work"' EXIT
for rev in "$@"; do
  dir="$work/$rev"
  git clone -q "$repo" "$dir/repo" && git -C "$dir/repo" checkout -q "$rev"
  load="$(cut -d' ' -f1 /proc/loadavg)"
  start=$SECONDS
  VISREC_CACHE_DIR="$dir/cache" bash "$dir/repo/scripts/install.sh" ${opts[@]+"${opts[@]}"} "$dir/venv" >"$dir/install.log" 2>&1 \
    || { tail -n 20 "$dir/install.log"; exit 1; }
  installed=$SECONDS
  (cd "$dir/repo" && VISREC_CACHE_DIR="$dir/cache" "$dir/venv/bin/visrec" demo --sample >"$dir/demo.log" 2>&1) \
    || { tail -n 20 "$dir/demo.log"; exit 1; }
  echo "$rev ${opts[*]+${opts[*]}}: install $((installed - start)) s, first demo $((SECONDS - installed)) s," \
    "both $((SECONDS - start)) s, environment $(du -sh "$dir/venv" | cut -f1)," \
    "load $load -> $(cut -d' ' -f1 /proc/loadavg)"
done
