#!/usr/bin/env bash
# The language table of plugins/README.md: the sample policy scaffolded
# and built in Rust, JavaScript, Python and Go, then, for each:
#   - the component's size;
#   - cold compile: `berth eval` of the bookie's review with no artifact
#     cache (wasmtime compiles the component), wall time and peak RSS;
#   - start with the artifact cache: the same `berth eval` once the cache
#     holds the compiled component;
#   - a warm call and a fresh-instance call on the bookie (criterion,
#     benches/languages.rs); instantiating costs their difference.
# Needs what .ci/install-tools installs (found there, as .ci/run's
# variables name them). Run from the repository root:
#   bash plugins/examples/measure.sh
set -euo pipefail
root=$PWD
export BERTH_COMPONENTIZE_JS=${BERTH_COMPONENTIZE_JS:-$root/.ci/node/node_modules/.bin/componentize-js}
export BERTH_COMPONENTIZE_PY=${BERTH_COMPONENTIZE_PY:-$root/.ci/venv/bin/componentize-py}
export BERTH_GO=${BERTH_GO:-$root/.ci/venv/bin/go}
export BERTH_JCO=${BERTH_JCO:-$root/.ci/node/node_modules/@bytecodealliance/jco}
[ -d .ci/node/bin ] && export PATH="$root/.ci/node/bin:$PATH"
cargo build --release -p berth --quiet
berth=$root/target/release/berth
work=$(mktemp -d)
export GOCACHE=$work/go-build CARGO_TARGET_DIR=$work/target
trap 'rm -rf "$work"' EXIT
bookie=$root/tests/fixtures/pulsar/reviews/005-pod-pulsar-bookie-0.json
projects=()
printf '| language | component | build | cold compile (wall, peak RSS) | start with cache |\n|---|---|---|---|---|\n'
for lang in rust js python go; do
  (cd "$work" && "$berth" plugin new "demo-$lang" --lang "$lang" >/dev/null)
  dir=$work/demo-$lang
  start=$(date +%s.%N)
  (cd "$work" && "$berth" plugin build --cache-dir "$work/cache-$lang" "demo-$lang" >/dev/null 2>"$work/build-$lang.log")
  build=$(echo "$(date +%s.%N) - $start" | bc)
  size=$(stat -c %s "$dir/demo-$lang.wasm")
  /usr/bin/time -f '%e %M' -o "$work/cold" "$berth" eval --no-cache --config "$dir/berth.yaml" "$bookie" >/dev/null
  read -r cold_s cold_kib <"$work/cold"
  /usr/bin/time -f '%e' -o "$work/warm" "$berth" eval --cache-dir "$work/cache-$lang" --config "$dir/berth.yaml" "$bookie" >/dev/null
  cached_s=$(cat "$work/warm")
  printf '| %s | %.1f MB | %.1f s | %.2f s, %d MiB | %.2f s |\n' "$lang" "$(echo "$size / 1000000" | bc -l)" "$build" "$cold_s" "$((cold_kib / 1024))" "$cached_s"
  projects+=("$lang=$dir/berth.yaml")
done
echo
echo "Calls on the bookie (criterion: median of the estimate, one thread):"
if ! BERTH_BENCH_PROJECTS=$(IFS=,; echo "${projects[*]}") \
  env -u CARGO_TARGET_DIR cargo bench -p berth --bench languages --quiet -- --noplot >"$work/bench.log" 2>&1; then
  echo "the bench failed:"; tail -30 "$work/bench.log"; exit 1
fi
# criterion prints an id on its own line or before its times: keep the last.
awk '/^language\//{id=$1} /time:/{for (i = 1; i <= NF; i++) if ($i == "time:") print id, $(i + 3), $(i + 4)}' "$work/bench.log"
