#!/usr/bin/env bash
# Runs the LoRA / QLoRA training-step benchmark in peft4j and in transformers + peft (+ bitsandbytes), shape by
# shape and config by config (each in its own process, so each peak RSS belongs to one shape and config), and prints
# a table.
#
#   scripts/bench.sh [--shapes llama-tiny,gpt2-tiny,llama-small,gpt2-small] [--configs lora,lora-gc,qlora,qlora-gc,qlora-nodq]
#                    [--steps N] [--warmup N] [--threads N]
#
# Run from the repository root after `mvn -q -B package -DskipTests`. Python: $PYTHON, else /work/V/bin/python
# (torch, transformers, peft); the 4-bit configs import bitsandbytes from $BNB_SRC (a source tree), else from the
# tarball $BNB_TAR (default /work/shared/pyref/bitsandbytes-0.50.2.dev0-src.tar.gz) unpacked into a temp dir. The
# peft4j launcher: $PEFT4J, else ./peft4j. --configs default: lora (qlora* need Llama shapes). --threads sets the
# intra-op threads of both sides (default: nproc). Steps default to each shape's default (200 tiny, 5 small, 2 for
# llama-0.5b); warm-up steps to 3 (both sides get the same values).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-/work/V/bin/python}
P4J=${PEFT4J:-./peft4j}
shapes=llama-tiny,gpt2-tiny,llama-small,gpt2-small
configs=lora
steps=()
warmup=3
threads=$(nproc)
while [ $# -gt 0 ]; do
  case "$1" in
    --shapes) shapes=$2; shift 2 ;;
    --configs) configs=$2; shift 2 ;;
    --steps) steps=(--steps "$2"); shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    -h|--help) sed -n 2,15p "$0"; exit 0 ;;
    *) echo "bench.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
[ -x "$PY" ] || command -v "$PY" >/dev/null || { echo "bench.sh: no python at '$PY' (set PYTHON)" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
pypath=${PYTHONPATH:-}
if [[ ",$configs," == *",qlora"* ]]; then
  if [ -n "${BNB_SRC:-}" ]; then
    pypath=$BNB_SRC${pypath:+:$pypath}
  else
    tar=${BNB_TAR:-/work/shared/pyref/bitsandbytes-0.50.2.dev0-src.tar.gz}
    [ -f "$tar" ] || { echo "bench.sh: the 4-bit configs need bitsandbytes: set BNB_SRC or BNB_TAR (no '$tar')" >&2; exit 2; }
    mkdir -p "$out/bnb" && tar -xzf "$tar" -C "$out/bnb"
    pypath=$out/bnb${pypath:+:$pypath}
  fi
fi
for s in ${shapes//,/ }; do
  for c in ${configs//,/ }; do
    echo "bench.sh: $s $c: peft4j ..." >&2
    $P4J bench --shape "$s" --config "$c" ${steps[@]+"${steps[@]}"} --warmup "$warmup" --threads "$threads" --json >> "$out/peft4j.jsonl"
    echo "bench.sh: $s $c: transformers + peft ..." >&2
    PYTHONPATH=$pypath "$PY" peft-examples/src/main/python/bench_hf.py --shape "$s" --config "$c" ${steps[@]+"${steps[@]}"} \
      --warmup "$warmup" --threads "$threads" 2> "$out/hf.err" >> "$out/hf.jsonl" || { cat "$out/hf.err" >&2; exit 1; }
  done
done
"$PY" - "$out/peft4j.jsonl" "$out/hf.jsonl" <<'PY'
import json, sys
key = lambda r: (r["shape"], r.get("config", "lora"))
j = {key(r): r for r in map(json.loads, open(sys.argv[1]))}
h = {key(r): r for r in map(json.loads, open(sys.argv[2]))}
print("| shape | config | steps | threads | peft4j ms/step | HF ms/step | time ratio | peft4j peak RSS MB | HF peak RSS MB "
      "| RSS ratio | peft4j base MB | HF base MB | 4-bit bits/weight (peft4j / HF) | HF attention |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for k, a in j.items():
    b = h[k]
    bits = f"{a['quant_bits_per_weight']:.4f} / {b['quant_bits_per_weight']:.4f}" if a.get("quantised_weights") else "-"
    print(f"| {k[0]} | {k[1]} | {a['steps']} | {a['threads']} | {a['ms_per_step']:.2f} | {b['ms_per_step']:.2f} | "
          f"{a['ms_per_step'] / b['ms_per_step']:.2f} | {a['peak_rss_mb']:.0f} | {b['peak_rss_mb']:.0f} | "
          f"{a['peak_rss_mb'] / b['peak_rss_mb']:.2f} | {a['base_mb']:.1f} | {b['base_mb']:.1f} | {bits} | {b['attn']} |")
PY
