#!/usr/bin/env bash
# Runs a command with DJL (and peft4j) on the libtorch of a Python PyTorch install instead of the stock
# libtorch 2.7.1 natives from Maven Central.
#
#   scripts/with-torch.sh [--rebuild] PYTHON -- COMMAND [ARGS ...]
#   scripts/with-torch.sh --prepare
#
# PYTHON is an interpreter that can `import torch` (e.g. /work/V/bin/python, python3). The first run for a
# torch version and flavour (cpu, cu130, ...) builds, once:
#   - DJL 0.36.0's JNI library (libdjl_torch.so) against that libtorch, with scripts/djl-bf16.patch applied
#     (stock DJL aborts the JVM on BFLOAT16; the patched JNI creates and casts BF16 arrays);
#   - peft4j's fused-op library (libpeft4j_fused.so, from peft-core/src/main/native/), against the same libtorch;
# into $PEFT4J_CACHE/djl-jni/VERSION-FLAVOR (default ~/.cache/peft4j/djl-jni/...), each build's log kept there
# (build.log; a failed build keeps build-failed.log and exits 3). Then COMMAND runs with:
#   PYTORCH_LIBRARY_PATH, PYTORCH_VERSION, PYTORCH_FLAVOR, ENGINE_CACHE_DIR  (DJL loads that libtorch + JNI)
#   PEFT4J_FUSED_LIB                                                         (peft4j uses the fused ops)
#   LD_LIBRARY_PATH  with the torch lib folder (and, for CUDA, libcudart's folder: DJL finds GPUs through it)
#   JAVA             .gpu/jre/bin/java when there is no java on PATH (the ./peft4j launcher reads $JAVA)
# e.g.  scripts/with-torch.sh /work/V/bin/python -- mvn -B -ntp verify
#       scripts/with-torch.sh python3 -- ./peft4j info
# --rebuild rebuilds both libraries; PEFT4J_NO_FUSED=1 skips the fused library (DJL's JNI only).
#
# Needs, besides the Python torch: g++ (Debian package g++), patch (patch), tar and gzip, and JNI headers:
# a JDK ($JAVA_HOME/include; Debian openjdk-17-jdk-headless) or .gpu/jni-include from --prepare. CMake is not
# needed. DJL's native sources: $DJL_NATIVE_SRC, else .gpu/djl-0.36.0-native-src.tar.gz, else
# ../shared/gpu/djl-0.36.0-native-src.tar.gz (a tarball of DJL 0.36.0's api/ and engines/pytorch/ sources).
# No network is used.
#
# --prepare (on a machine with a JDK and Maven, for a machine that has only a Python torch, e.g. a GPU box):
# fills the ignored folder .gpu/ with a jlink'ed Java runtime (.gpu/jre), the JDK's JNI headers
# (.gpu/jni-include), the DJL native sources, the project's jars + runtime dependencies without
# pytorch-native-cpu (.gpu/lib) and junit-platform-console-standalone (.gpu/junit), after `mvn package`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "with-torch.sh: $*" >&2; exit "${code:-2}"; }
DJL_VERSION=0.36.0

prepare() {
  cd "$root"
  grep -qx '/.gpu/' .gitignore 2>/dev/null || grep -qx '/.gpu/' .git/info/exclude 2>/dev/null \
    || die "add /.gpu/ to .gitignore first"
  command -v jlink >/dev/null || die "--prepare needs a JDK with jlink (Debian: openjdk-17-jdk-headless)"
  command -v mvn >/dev/null || die "--prepare needs Maven (Debian: maven)"
  local jh; jh=${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")}
  rm -rf .gpu.tmp && mkdir -p .gpu.tmp
  echo "with-torch.sh: jlink a runtime ..." >&2
  jlink --add-modules java.base,java.logging,java.management,java.naming,java.xml,java.sql,jdk.unsupported,jdk.zipfs \
    --strip-debug --no-header-files --no-man-pages --compress=2 --output .gpu.tmp/jre
  cp -r "$jh/include" .gpu.tmp/jni-include
  cp "$(djl_src)" .gpu.tmp/
  echo "with-torch.sh: mvn package + dependencies ..." >&2
  mvn -B -ntp -q -o package -DskipTests
  mvn -B -ntp -q -o dependency:copy-dependencies -DexcludeArtifactIds=pytorch-native-cpu -DincludeScope=test \
    -DoutputDirectory="$root/.gpu.tmp/lib"
  cp peft-*/target/peft-*.jar .gpu.tmp/lib/
  rm -f .gpu.tmp/lib/peft-*-SNAPSHOT.jar.tmp
  local junit; junit=$(ls ~/.m2/repository/org/junit/platform/junit-platform-console-standalone/*/junit-platform-console-standalone-*.jar 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$junit" ]; then mkdir -p .gpu.tmp/junit && cp "$junit" .gpu.tmp/junit/; else
    echo "with-torch.sh: no junit-platform-console-standalone in ~/.m2 (mvn dependency:get -Dartifact=org.junit.platform:junit-platform-console-standalone:1.11.4 adds it); .gpu/junit left out" >&2; fi
  rm -rf .gpu && mv .gpu.tmp .gpu
  du -sh .gpu >&2
}

djl_src() {
  local c
  for c in "${DJL_NATIVE_SRC:-}" "$root/.gpu/djl-$DJL_VERSION-native-src.tar.gz" "$root/../shared/gpu/djl-$DJL_VERSION-native-src.tar.gz"; do
    [ -n "$c" ] && [ -f "$c" ] && { echo "$c"; return; }
  done
  die "no DJL $DJL_VERSION native sources: set DJL_NATIVE_SRC to djl-$DJL_VERSION-native-src.tar.gz (api/ and engines/pytorch/ of DJL $DJL_VERSION), or run --prepare where it is"
}

jni_include() {
  local c jh=""
  if command -v javac >/dev/null; then jh=$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")"); fi
  for c in "${JNI_INCLUDE:-}" "${JAVA_HOME:+$JAVA_HOME/include}" "${jh:+$jh/include}" "$root/.gpu/jni-include"; do
    [ -n "$c" ] && [ -f "$c/jni.h" ] && { echo "$c"; return; }
  done
  die "no JNI headers (jni.h): install a JDK (Debian: apt-get install openjdk-17-jdk-headless), set JNI_INCLUDE, or run --prepare on a machine with a JDK"
}

# build_djl_jni TORCH_DIR DEST_SO LOG: DJL's JNI against that torch, with the BF16 patch
build_djl_jni() {
  local T=$1 dest=$2 work=$CACHE/work
  rm -rf "$work" && mkdir -p "$work"
  tar -xzf "$(djl_src)" -C "$work"
  local S=$work/djl-$DJL_VERSION N
  patch -d "$S" -p1 < "$root/scripts/djl-bf16.patch"
  N=$S/engines/pytorch/pytorch-native/src/main/native
  mkdir -p "$work/include" "$work/obj"
  if command -v javac >/dev/null; then
    javac -sourcepath "$S/engines/pytorch/pytorch-engine/src/main/java" -h "$work/include" -d "$work/classes" \
      "$S/engines/pytorch/pytorch-engine/src/main/java/ai/djl/pytorch/jni/PyTorchLibrary.java"
  elif [ -f "$root/.gpu/jni-include/ai_djl_pytorch_jni_PyTorchLibrary.h" ]; then
    cp "$root/.gpu/jni-include/ai_djl_pytorch_jni_PyTorchLibrary.h" "$work/include/"
  else
    die "no javac to generate DJL's JNI header and no .gpu/jni-include/ai_djl_pytorch_jni_PyTorchLibrary.h (run --prepare)"
  fi
  local J; J=$(jni_include)
  local flags="-O2 -fPIC -std=gnu++17 -D_GLIBCXX_USE_CXX11_ABI=$ABI -DNDEBUG -I$work/include -I$J -I$J/linux -I$S/api/src/main/native -isystem $T/include -isystem $T/include/torch/csrc/api/include"
  echo "compiling $(ls "$N"/*.cc | wc -l) files with $JOBS jobs: g++ $flags"
  # shellcheck disable=SC2016
  ls "$N"/*.cc | xargs -P "$JOBS" -I{} sh -c 'g++ '"$flags"' -c "$1" -o "'"$work"'/obj/$(basename "$1" .cc).o" || exit 255' _ {}
  g++ -shared -Wl,-soname,libdjl_torch.so -o "$work/libdjl_torch.so" "$work"/obj/*.o -L"$T/lib" $LIBS
  mkdir -p "$(dirname "$dest")" && mv "$work/libdjl_torch.so" "$dest"
  rm -rf "$work"
}

# build_fused TORCH_DIR DEST_SO: peft4j's fused ops against that torch
build_fused() {
  local T=$1 dest=$2 J tmp
  J=$(jni_include)
  tmp=$dest.tmp.$$
  g++ -O2 -fPIC -std=gnu++17 -D_GLIBCXX_USE_CXX11_ABI="$ABI" -DNDEBUG -DPEFT4J_TORCH_VERSION="\"$VER\"" \
    -I"$J" -I"$J/linux" -isystem "$T/include" -isystem "$T/include/torch/csrc/api/include" \
    -shared -o "$tmp" "$root"/peft-core/src/main/native/*.cc -L"$T/lib" -Wl,-rpath,"$T/lib" $LIBS
  mv "$tmp" "$dest"
}

# run_logged NAME LOG CMD...: runs a build step, keeping its log; on failure keeps it as *-failed.log and exits 3
run_logged() {
  local name=$1 log=$2; shift 2
  local t0=$SECONDS
  echo "with-torch.sh: building $name for torch $VER ($FLAVOR) ..." >&2
  local rc
  set +e
  ( set -e; echo "== $(date -u +%FT%TZ) $name"; "$@" ) > "$log.part" 2>&1
  rc=$?
  set -e
  if [ $rc != 0 ]; then
    mv "$log.part" "${log%.log}-failed.log"
    tail -n 25 "${log%.log}-failed.log" >&2
    code=3 die "building $name failed; full log: ${log%.log}-failed.log"
  fi
  echo "== built in $((SECONDS - t0)) s" >> "$log.part"
  mv "$log.part" "$log"
  echo "with-torch.sh: $name built in $((SECONDS - t0)) s (log: $log)" >&2
}

if [ "${1:-}" = --prepare ]; then prepare; exit 0; fi
rebuild=0
if [ "${1:-}" = --rebuild ]; then rebuild=1; shift; fi
case "${1:-}" in ""|-h|--help) sed -n 2,33p "$0"; exit 2 ;; esac
PY=$1; shift
[ "${1:-}" = -- ] || die "expected '--' after the Python interpreter, then the command (e.g. $0 $PY -- mvn -B -ntp verify)"
shift
[ $# -gt 0 ] || die "no command after '--'"
command -v "$PY" >/dev/null 2>&1 || [ -x "$PY" ] || die "no Python interpreter '$PY'"

info=$("$PY" - 2>&1 <<'PY'
import os, sys
try:
    import torch
except Exception as e:
    print("NO_TORCH %s: %s" % (type(e).__name__, e)); sys.exit(0)
d = os.path.dirname(torch.__file__)
v = torch.__version__.split("+")[0]
if torch.version.cuda:
    fl = "cu" + torch.version.cuda.replace(".", "")
elif getattr(torch.version, "hip", None):
    fl = "rocm"
else:
    fl = "cpu"
print(d); print(v); print(fl); print(int(torch._C._GLIBCXX_USE_CXX11_ABI)); print(torch.__version__)
cr = ""
if fl.startswith("cu"):
    try:
        import nvidia.cuda_runtime as c
        cr = os.path.join(list(c.__path__)[0], "lib")
    except Exception:
        pass
print(cr or "-")
PY
) || die "'$PY' failed: $info"
case $info in NO_TORCH*) die "no torch in '$PY' (${info#NO_TORCH }); install it with '$PY -m pip install torch'";; esac
{ read -r T; read -r VER; read -r FLAVOR; read -r ABI; read -r FULLVER; read -r CUDART; } <<< "$info"
[ "$CUDART" != - ] || CUDART=""
[ "$FLAVOR" != rocm ] || die "torch $FULLVER in '$PY' is a ROCm build; DJL $DJL_VERSION supports only CPU and CUDA libtorch"
[ -f "$T/lib/libtorch.so" ] && [ -d "$T/include/torch" ] \
  || die "torch $FULLVER at $T has no lib/libtorch.so or include/torch (a wheel without C++ headers?)"
LIBS="-ltorch -ltorch_cpu -lc10"
case $FLAVOR in cu*) LIBS="$LIBS -ltorch_cuda -lc10_cuda";; esac
JOBS=${JOBS:-$(nproc)}

CACHE=${PEFT4J_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/peft4j}/djl-jni/$VER-$FLAVOR
jni=$CACHE/pytorch/$VER-$FLAVOR-linux-x86_64/$DJL_VERSION-libdjl_torch.so
fused=$CACHE/libpeft4j_fused.so
mkdir -p "$CACHE"
need_tools() {
  command -v g++ >/dev/null || die "no C++ compiler: install g++ (Debian: apt-get install g++)"
  command -v patch >/dev/null || die "no patch: install it (Debian: apt-get install patch)"
  command -v tar >/dev/null && command -v gzip >/dev/null || die "no tar/gzip (Debian: apt-get install tar gzip)"
  jni_include >/dev/null
}
exec 9> "$CACHE/.lock"
flock 9 # one build at a time per cache folder
# what the JNI was built for: a different ABI or patch under the same version/flavour rebuilds it
stamp="torch $FULLVER abi $ABI djl $DJL_VERSION patch $(sha256sum < "$root/scripts/djl-bf16.patch" | cut -c1-16)"
if [ $rebuild = 1 ] || [ ! -f "$jni" ] || [ "$(cat "$CACHE/jni.stamp" 2>/dev/null)" != "$stamp" ]; then
  need_tools
  run_logged "DJL $DJL_VERSION JNI (BF16 patch)" "$CACHE/build.log" build_djl_jni "$T" "$jni"
  echo "$stamp" > "$CACHE/jni.stamp"
  echo "$T" > "$CACHE/torch-dir"
fi
if [ "${PEFT4J_NO_FUSED:-0}" != 1 ]; then
  src_sum=$(find "$root/peft-core/src/main/native" -type f | sort | xargs cat | sha256sum | cut -c1-16)
  if [ $rebuild = 1 ] || [ ! -f "$fused" ] || [ "$(cat "$CACHE/fused.sha" 2>/dev/null)" != "$src_sum" ]; then
    need_tools
    run_logged "peft4j fused ops" "$CACHE/build-fused.log" build_fused "$T" "$fused"
    echo "$src_sum" > "$CACHE/fused.sha"
  fi
  export PEFT4J_FUSED_LIB=$fused
else
  unset PEFT4J_FUSED_LIB
fi
exec 9>&-

export PYTORCH_LIBRARY_PATH=$T/lib PYTORCH_VERSION=$VER PYTORCH_FLAVOR=$FLAVOR ENGINE_CACHE_DIR=$CACHE
export LD_LIBRARY_PATH=${CUDART:+$CUDART:}$T/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if ! command -v java >/dev/null && [ -x "$root/.gpu/jre/bin/java" ] && [ -z "${JAVA:-}" ]; then
  export JAVA=$root/.gpu/jre/bin/java PATH=$root/.gpu/jre/bin:$PATH
fi
exec "$@"
