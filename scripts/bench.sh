#!/usr/bin/env bash
# Runs the LoRA training-step benchmark in peft4j and in transformers + peft, shape by shape (each in its own
# process, so each peak RSS belongs to one shape), and prints a table.
#
#   scripts/bench.sh [--shapes llama-tiny,gpt2-tiny,llama-small,gpt2-small] [--steps N] [--warmup N] [--threads N]
#
# Run from the repository root after `mvn -q -B install -DskipTests`. Python: $PYTHON, else /work/V/bin/python
# (torch, transformers, peft). The peft4j launcher: $PEFT4J, else ./peft4j. --threads sets the intra-op
# threads of both sides (default: nproc). Steps default to each shape's default (200 tiny, 5 small); warm-up
# steps to 3 (both sides get the same values).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-/work/V/bin/python}
P4J=${PEFT4J:-./peft4j}
shapes=llama-tiny,gpt2-tiny,llama-small,gpt2-small
steps=()
warmup=3
threads=$(nproc)
while [ $# -gt 0 ]; do
  case "$1" in
    --shapes) shapes=$2; shift 2 ;;
    --steps) steps=(--steps "$2"); shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    -h|--help) sed -n 2,10p "$0"; exit 0 ;;
    *) echo "bench.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
[ -x "$PY" ] || command -v "$PY" >/dev/null || { echo "bench.sh: no python at '$PY' (set PYTHON)" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for s in ${shapes//,/ }; do
  echo "bench.sh: $s: peft4j ..." >&2
  $P4J bench --shape "$s" ${steps[@]+"${steps[@]}"} --warmup "$warmup" --threads "$threads" --json >> "$out/peft4j.jsonl"
  echo "bench.sh: $s: transformers + peft ..." >&2
  "$PY" peft-examples/src/main/python/bench_hf.py --shape "$s" ${steps[@]+"${steps[@]}"} --warmup "$warmup" --threads "$threads" \
    2> "$out/hf.err" >> "$out/hf.jsonl" || { cat "$out/hf.err" >&2; exit 1; }
done
"$PY" - "$out/peft4j.jsonl" "$out/hf.jsonl" <<'PY'
import json, sys
j = {r["shape"]: r for r in map(json.loads, open(sys.argv[1]))}
h = {r["shape"]: r for r in map(json.loads, open(sys.argv[2]))}
print("| shape | steps | threads | peft4j ms/step | HF ms/step | ratio | peft4j peak RSS MB | HF peak RSS MB | HF attention |")
print("|---|---|---|---|---|---|---|---|---|")
for s, a in j.items():
    b = h[s]
    print(f"| {s} | {a['steps']} | {a['threads']} | {a['ms_per_step']:.2f} | {b['ms_per_step']:.2f} | "
          f"{a['ms_per_step'] / b['ms_per_step']:.2f} | {a['peak_rss_mb']:.0f} | {b['peak_rss_mb']:.0f} | {b['attn']} |")
PY
