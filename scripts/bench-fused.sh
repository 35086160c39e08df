#!/usr/bin/env bash
# The LoRA step benchmark on one Python torch for all three sides, interleaved: peft4j with its fused ops,
# peft4j with the composite ops (PEFT4J_NO_FUSED=1), and transformers + peft, all on the libtorch of PYTHON.
# Each shape runs ROUNDS times in the order fused, HF, composite; the table gives the minimum and the median
# over the rounds (on a shared machine other jobs only ever add time, so the minimum is the steadiest figure).
#
#   scripts/bench-fused.sh [--python PY] [--shapes a,b] [--rounds N] [--threads N] [--steps N]
#
# Needs the jars (mvn -B -ntp package -DskipTests) and a Python with torch, transformers and peft.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/work/V/bin/python
shapes=llama-tiny,gpt2-tiny,llama-small
rounds=3
threads=1
steps=()
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PY=$2; shift 2 ;;
    --shapes) shapes=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --steps) steps=(--steps "$2"); shift 2 ;;
    -h|--help) sed -n 2,9p "$0"; exit 0 ;;
    *) echo "bench-fused.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for s in ${shapes//,/ }; do
  for r in $(seq "$rounds"); do
    echo "bench-fused.sh: $s round $r/$rounds (load $(cut -d' ' -f1 /proc/loadavg))" >&2
    scripts/with-torch.sh "$PY" -- ./peft4j bench --shape "$s" ${steps[@]+"${steps[@]}"} --threads "$threads" --json \
      2>/dev/null | tail -n 1 | sed 's/"impl":"peft4j"/"impl":"fused"/' >> "$out/all.jsonl"
    scripts/with-torch.sh "$PY" -- "$PY" peft-examples/src/main/python/bench_hf.py --shape "$s" \
      ${steps[@]+"${steps[@]}"} --threads "$threads" 2>/dev/null >> "$out/all.jsonl"
    PEFT4J_NO_FUSED=1 scripts/with-torch.sh "$PY" -- ./peft4j bench --shape "$s" ${steps[@]+"${steps[@]}"} \
      --threads "$threads" --json 2>/dev/null | tail -n 1 | sed 's/"impl":"peft4j"/"impl":"composite"/' >> "$out/all.jsonl"
  done
done
"$PY" - "$out/all.jsonl" "$("$PY" -c 'import torch; print(torch.__version__)')" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault((r["shape"], r["impl"]), []).append(r["ms_per_step"])
print(f"torch {sys.argv[2]} on both sides; ms/step, min (median) of {max(len(v) for v in by.values())} rounds")
print("| shape | steps | peft4j fused | peft4j composite | HF | fused / HF | composite / HF |")
print("|---|---|---|---|---|---|---|")
for s in dict.fromkeys(r["shape"] for r in rows):
    f, c, h = by[(s, "fused")], by[(s, "composite")], by[(s, "hf")]
    st = next(r["steps"] for r in rows if r["shape"] == s)
    fmt = lambda v: f"{min(v):.2f} ({statistics.median(v):.2f})"
    print(f"| {s} | {st} | {fmt(f)} | {fmt(c)} | {fmt(h)} | {min(f) / min(h):.2f} ({statistics.median(f) / statistics.median(h):.2f}) "
          f"| {min(c) / min(h):.2f} ({statistics.median(c) / statistics.median(h):.2f}) |")
PY
