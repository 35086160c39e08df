#!/usr/bin/env bash
# Reverse parity (peft4j writes, the reference library reads). Developers run it; CI checks the fixtures it leaves.
#   scripts/reverse-parity.sh [PYTHON] [CASE...]     (PYTHON: an interpreter with torch, transformers and peft;
#                                                     default /work/V/bin/python, else python3)
# 1. builds (reactor, no install), 2. ReverseParity writes every case into a work directory,
# 3. reverse_parity.py loads them in HF PEFT / transformers, prints the table and updates
#    peft-core/src/test/resources/fixtures/hf-peft-reverse/<case>.json for the cases that load and match.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${1:-}
if [ -n "$py" ] && [ -x "$py" ]; then shift; else py=$([ -x /work/V/bin/python ] && echo /work/V/bin/python || echo python3); fi
cd "$root"
mvn -B -ntp -q package -DskipTests
work=$(mktemp -d "${TMPDIR:-/tmp}/reverse-parity.XXXXXX")
cp="$(ls peft-examples/target/peft-examples-*.jar | grep -v -- '-tests.jar' | head -n 1):peft-examples/target/lib/*"
cp="$cp:peft-examples/target/test-classes:peft-core/target/test-classes"
java -Dai.djl.offline=true -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$cp" \
  io.github.peft4j.examples.reverse.ReverseParity "$work" "$@"
"$py" peft-core/src/test/python/reverse_parity.py check "$work"
echo "work directory: $work"
