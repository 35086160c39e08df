#!/usr/bin/env bash
# Load and soak benchmarks (not CI; the short load test is ServeLoadTest):
#   scripts/soak.sh load [CLIENTS] [REQUESTS]   N clients x M requests against peft4j serve (default 16 x 100)
#   scripts/soak.sh serve [MINUTES]             the serve soak with RSS samples (default 10)
#   scripts/soak.sh train [STEPS]               the training soak with RSS samples (default 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${SOAK_OUT:-$ROOT/target/soak}
mkdir -p "$OUT"
mvn -B -ntp -q -o test-compile -pl peft-examples -am
mvn -B -ntp -q -o dependency:build-classpath -pl peft-examples -Dmdep.includeScope=test -Dmdep.outputFile="$OUT/cp.txt" >/dev/null
CP="$ROOT/peft-examples/target/test-classes:$ROOT/peft-examples/target/classes"
for m in peft-core peft-lora peft-adapters peft-prompt; do CP="$CP:$ROOT/$m/target/classes"; done
CP="$CP:$ROOT/peft-core/target/test-classes:$(cat "$OUT/cp.txt")"
JAVA=(java -Xmx1g -Dai.djl.offline=true -Dai.djl.default_engine=PyTorch -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$CP")
case "${1:-}" in
  load) "${JAVA[@]}" io.github.peft4j.reliability.ServeLoad "${2:-16}" "${3:-100}" ;;
  serve) "${JAVA[@]}" io.github.peft4j.reliability.Soak serve "${2:-10}" ;;
  train) "${JAVA[@]}" io.github.peft4j.reliability.Soak train "${2:-10000}" ;;
  *) echo "usage: $0 load [CLIENTS] [REQUESTS] | serve [MINUTES] | train [STEPS]" >&2; exit 2 ;;
esac
