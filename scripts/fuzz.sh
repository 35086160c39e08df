#!/usr/bin/env bash
# A fuzzing campaign over every parser (io.github.peft4j.fuzz.ParserFuzzTest): Jazzer, coverage-guided,
# RUNS inputs per target (default 10000; libFuzzer's -runs), one JVM per target. Not part of CI: CI replays the
# committed inputs (seeds and past findings) in ParserFuzzTest's regression mode.
#
#   scripts/fuzz.sh [TARGET...]        default: every @FuzzTest method of ParserFuzzTest
#
# Inputs per target: ParserFuzzTest.RUNS (10,000). Env: KEEP_GOING
# (findings to collect before a target stops, default 20), FUZZ_OUT (logs, default target/fuzz).
# Findings are written by Jazzer as crash-* files into
# peft-examples/src/test/resources/io/github/peft4j/fuzz/ParserFuzzTestInputs/<target>/: fix the bug, keep the file
# (it is replayed by every `mvn test` from then on), commit both.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${FUZZ_OUT:-$ROOT/target/fuzz}
KEEP_GOING=${KEEP_GOING:-20}
mkdir -p "$OUT"

mvn -B -ntp -q -o test-compile -pl peft-examples -am
mvn -B -ntp -q -o dependency:build-classpath -pl peft-examples -Dmdep.includeScope=test -Dmdep.outputFile="$OUT/cp.txt" >/dev/null
CP="$ROOT/peft-examples/target/test-classes:$ROOT/peft-examples/target/classes"
for m in peft-core peft-lora peft-adapters peft-prompt; do
  CP="$CP:$ROOT/$m/target/classes"
done
CP="$CP:$ROOT/peft-core/target/test-classes:$(cat "$OUT/cp.txt")"

if [ $# -gt 0 ]; then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <(grep -oP 'void \K\w+(?=\(byte\[\] data\))' \
    peft-examples/src/test/java/io/github/peft4j/fuzz/ParserFuzzTest.java)
fi

printf '%-18s %10s %10s %10s %8s %s\n' target inputs accepted rejected seconds result | tee "$OUT/campaign.txt"
status=0
for t in "${TARGETS[@]}"; do
  log="$OUT/$t.log"
  rm -f "$OUT/$t.summary.txt" "$OUT/$t.rejected.txt"
  start=$(date +%s)
  set +e
  # run from peft-examples so that Jazzer files findings under its src/test/resources inputs directory
  (cd peft-examples && JAZZER_FUZZ=1 java -Xmx2g -Dai.djl.offline=true -Dai.djl.default_engine=PyTorch \
      -Dorg.slf4j.simpleLogger.defaultLogLevel=error -Djazzer.keep_going="$KEEP_GOING" \
      -Dpeft4j.fuzz.log="$OUT" -cp "$CP" io.github.peft4j.fuzz.FuzzMain "$t") >"$log" 2>&1
  rc=$?
  set -e
  secs=$(( $(date +%s) - start ))
  runs=$(grep -oP 'Done \K\d+(?= runs)' "$log" | tail -1 || true)
  if [ -f "$OUT/$t.summary.txt" ]; then
    read -r _ _ inputs _ accepted _ rejected < "$OUT/$t.summary.txt"
  else
    inputs=?; accepted=?; rejected=?  # the JVM died before its summary (a crash: see the log)
  fi
  # a finding is a failed test, or (with keep_going) a reported exception or a deadly signal (a JVM crash)
  if grep -aq '== Java Exception\|deadly signal' "$log"; then [ $rc -eq 0 ] && rc=1; fi
  result=$([ $rc -eq 0 ] && echo ok || echo "FINDINGS (rc $rc, see $log)")
  [ -n "${runs:-}" ] && inputs="$runs"
  printf '%-18s %10s %10s %10s %8s %s\n' "$t" "$inputs" "$accepted" "$rejected" "$secs" "$result" | tee -a "$OUT/campaign.txt"
  [ $rc -eq 0 ] || status=1
  if ls hs_err_pid*.log peft-examples/hs_err_pid*.log >/dev/null 2>&1; then
    echo "JVM crash log found (hs_err_pid*.log)" | tee -a "$OUT/campaign.txt"; status=1
  fi
done
exit $status
