#!/usr/bin/env bash
# The one-shot GPU check: run on a lent GPU machine, in the repository root, with the bundle of
# tools/device/prepare.sh carried (.device/bundle.tar.xz). In one call, each stage under its own
# time limit and all of them under one budget (8 minutes by default), it
#   1. records the machine (GPU, driver, nvcc, compiler, PyTorch, cuDNN, compute-sanitizer),
#   2. unpacks the bundle and configures against it and the machine's CUDA and cuDNN,
#   3. builds for sm_90 (16 jobs; ninja -k 0, so one broken file does not hide the others),
#   4. checks that the dependency headers and libraries came from the bundle,
#   5. runs every [cuda] test (ctest -L cuda),
#   6. times `dualflow bench kernels --device cuda --json`,
#   7. times the toy2d and Fashion-MNIST training/sampling steps on CUDA, each beside its PyTorch
#      replica (tools/bench_torch.py --device cuda) on the same GPU,
#   8. times `dualflow bench models --device cuda`,
#   9. runs compute-sanitizer memcheck over the engine's [cuda] tests with the time left,
# and writes $OUT/report.json (stages, tests, every benchmark row, the dualflow/PyTorch ratios)
# beside check.log (every stage's whole output), ctest_cuda.xml and the benchmark JSON lines.
# A stage that runs out of time is killed and recorded as "timeout"; the next one still runs.
#
#   tools/device/check.sh                 # on the GPU machine (docs/GPU.md: the device call)
#   tools/device/check.sh --rehearse      # here: CUDA off, only the bundle visible to CMake,
#                                         # the GPU stages run on the CPU with few steps
# Environment: OUT (report folder; default /tmp/dualflow-check), CHECK_BUDGET_S (480; 3600 when
# rehearsing), CHECK_JOBS (16, or nproc when rehearsing), CHECK_PYTHON (python3, the one with
# PyTorch), CHECK_STEPS / CHECK_WARMUP (20 / 3 timed and untimed steps per workload),
# CHECK_BUILD (build folder; build-device, or build-rehearse when rehearsing), CHECK_LIMIT_SCALE
# (each stage's limit times this; 1, or 10 when rehearsing).
set -uo pipefail
cd "$(dirname "$0")/../.."
export ROOT=$PWD

export REHEARSE=0
if [[ ${1:-} == --rehearse ]]; then
  REHEARSE=1
elif [[ -n ${1:-} ]]; then
  echo "usage: tools/device/check.sh [--rehearse]" >&2
  exit 2
fi

export OUTDIR=${OUT:-/tmp/dualflow-check}
mkdir -p "$OUTDIR"
if ((REHEARSE)); then
  budget=${CHECK_BUDGET_S:-3600}
  limit_scale=${CHECK_LIMIT_SCALE:-10}  # a cold build on two cores takes minutes
  export JOBS=${CHECK_JOBS:-$(nproc)} DEVICE=cpu STEPS=${CHECK_STEPS:-2} WARMUP=${CHECK_WARMUP:-1}
  export BUILD=${CHECK_BUILD:-$ROOT/build-rehearse}
else
  budget=${CHECK_BUDGET_S:-480}
  limit_scale=${CHECK_LIMIT_SCALE:-1}
  export JOBS=${CHECK_JOBS:-16} DEVICE=cuda STEPS=${CHECK_STEPS:-20} WARMUP=${CHECK_WARMUP:-3}
  export BUILD=${CHECK_BUILD:-$ROOT/build-device}
fi
export PYTHON=${CHECK_PYTHON:-python3}
export DUALFLOW=$BUILD/train/dualflow
export BUNDLE_ROOT=/tmp/dualflow-bundle
export PREFIX=$BUNDLE_ROOT/root/usr
export LOG=$OUTDIR/check.log
stages_tsv=$OUTDIR/stages.tsv
: >"$LOG"
: >"$stages_tsv"
t0=$(date +%s)
reserve_s=15  # kept back for the report

elapsed() { echo $(($(date +%s) - t0)); }

# stage NAME LIMIT_S FUNCTION: runs FUNCTION (exported) under `timeout`, its output appended to
# check.log and its last lines printed; records ok / fail / timeout / skipped (exit 77).
stage() {
  local name=$1 limit=$(($2 * limit_scale)) fn=$3 left lim start rc status seconds part
  left=$((budget - reserve_s - $(elapsed)))
  if ((left < 10)); then
    echo "== [$(elapsed)s] $name: skipped, the budget is spent"
    printf '%s\tskipped\t-\t0\tthe budget was spent\n' "$name" >>"$stages_tsv"
    return
  fi
  lim=$((limit < left ? limit : left))
  echo "== [$(elapsed)s] $name (limit ${lim}s)"
  part=$OUTDIR/.stage.log
  start=$(date +%s.%N)
  timeout -k 10 "$lim" bash -c "$fn" >"$part" 2>&1
  rc=$?
  seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  case $rc in
    0) status=ok ;;
    77) status=skipped ;;
    124 | 137) status=timeout ;;
    *) status=fail ;;
  esac
  { echo "===== $name: $status (exit $rc, ${seconds}s of ${lim}s)"; cat "$part"; } >>"$LOG"
  tail -n 15 "$part" | sed 's/^/   | /'
  echo "   $name: $status (exit $rc, ${seconds}s)"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$seconds" "$(tail -n 1 "$part" | tr '\t' ' ' | cut -c1-300)" >>"$stages_tsv"
  rm -f "$part"
}

need_dualflow() { [[ -x $DUALFLOW ]] || { echo "no $DUALFLOW: the build did not make it"; exit 77; }; }
export -f need_dualflow

inventory() {
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  uname -srm
  grep -E '^(PRETTY_NAME)=' /etc/os-release 2>/dev/null
  echo "cpus: $(nproc), memory: $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,compute_cap --format=csv 2>&1 || echo "nvidia-smi: not found"
  command -v nvcc >/dev/null && nvcc --version | tail -n 2 || echo "nvcc: not on PATH"
  cmake --version | head -n 1
  if command -v ninja >/dev/null; then echo "ninja $(ninja --version)"; else echo "ninja: not found (Makefiles)"; fi
  "${CXX:-c++}" --version | head -n 1
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.is_available())" 2>&1 | tail -n 1
  command -v compute-sanitizer >/dev/null && compute-sanitizer --version | tail -n 1 || echo "compute-sanitizer: not found"
  echo "cuDNN: ${CUDNN_INCLUDE_DIR:-not found} ${CUDNN_LIBRARY:-}"
  head -n 2 "$BUNDLE_ROOT/root/BUNDLE.txt" 2>/dev/null
}

configure() {
  local generator=() extra=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  if ((REHEARSE)); then
    # Only the bundle: the prefixes /usr and /usr/local are not searched, so a dependency the
    # bundle lacks fails here as it would on the GPU machine (the tools are named outright).
    extra+=(-DDUALFLOW_CUDA=OFF -DCMAKE_FIND_USE_CMAKE_SYSTEM_PATH=OFF "-DCMAKE_IGNORE_PREFIX_PATH=/usr;/usr/local"
            -DCMAKE_CXX_COMPILER="$(command -v "${CXX:-c++}")")
    command -v ninja >/dev/null && extra+=(-DCMAKE_MAKE_PROGRAM="$(command -v ninja)")
  else
    extra+=(-DDUALFLOW_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90)
    [[ -n ${CUDNN_INCLUDE_DIR:-} ]] && extra+=(-DCUDNN_INCLUDE_DIR="$CUDNN_INCLUDE_DIR" -DCUDNN_LIBRARY="$CUDNN_LIBRARY")
  fi
  # CMAKE_POLICY_VERSION_MINIMUM: a CMake 4 there accepts the packages' older policy lines.
  CMAKE_POLICY_VERSION_MINIMUM=3.5 cmake -S "$ROOT" -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$PREFIX" -DDUALFLOW_MPI=OFF "${extra[@]}" || exit 1
  grep -E '^(fmt_DIR|Catch2_DIR|CLI11_DIR|nlohmann_json_DIR|tomlplusplus_DIR|OPENBLAS_LIBRARY|CBLAS_INCLUDE_DIR|STB_LIBRARY|ZLIB_LIBRARY_RELEASE|CUDNN_LIBRARY|CMAKE_CUDA_COMPILER|CMAKE_CXX_COMPILER):' \
    "$BUILD/CMakeCache.txt"
}

build() {
  local keep_going=()
  [[ -f $BUILD/build.ninja ]] && keep_going=(-- -k 0)
  cmake --build "$BUILD" -j "$JOBS" "${keep_going[@]}"
}

provenance() {
  need_dualflow
  local bad=0 deps leaks lib where
  if [[ -f $BUILD/build.ninja ]]; then
    deps=$(ninja -C "$BUILD" -t deps 2>/dev/null)
    leaks=$(grep -E '^ +/usr/(local/)?include/(fmt/|catch2/|CLI/|nlohmann/|toml\+\+/|stb/|zlib\.h|zconf\.h|x86_64-linux-gnu/(cblas|openblas))' <<<"$deps" | sort -u)
    if [[ -n $leaks ]]; then
      echo "headers read from the system instead of the bundle:"
      echo "$leaks"
      bad=1
    fi
    echo "headers read from the bundle: $(grep -c "^ *$PREFIX/include" <<<"$deps")"
  fi
  for lib in libfmt libopenblas libtomlplusplus libstb; do
    where=$(ldd "$DUALFLOW" | awk -v l="$lib" '$1 ~ "^" l {print $3}')
    echo "$lib -> ${where:-not linked}"
    [[ $where == "$BUNDLE_ROOT"/* ]] || bad=1
  done
  ldd "$DUALFLOW" | grep -E 'cudart|cublas|cudnn' || true
  exit $bad
}

cuda_tests() {
  [[ -x $BUILD/tests/test_engine ]] || { echo "no test_engine: the build did not make the tests"; exit 77; }
  ctest --test-dir "$BUILD" -L cuda --output-on-failure --timeout 150 -j 4 --output-junit "$OUTDIR/ctest_cuda.xml"
}

bench_kernels() {
  need_dualflow
  local quick=()
  ((REHEARSE)) && quick=(--quick)
  "$DUALFLOW" bench kernels --device "$DEVICE" "${quick[@]}" --json "$OUTDIR/bench_kernels.jsonl"
}

bench_steps() {
  need_dualflow
  local w torch=1 rc=0 limit=100
  "$PYTHON" -c "import torch" 2>/dev/null || { echo "$PYTHON cannot import torch: the PyTorch side is left out"; torch=0; }
  : >"$OUTDIR/bench_steps.jsonl"
  for w in toy2d-cfm toy2d-meanflow toy2d-euler toy2d-nll-exact fmnist-unet-cfm fmnist-dit-meanflow; do
    echo "-- $w"
    timeout "$limit" "$DUALFLOW" bench "$w" --device "$DEVICE" --steps "$STEPS" --warmup "$WARMUP" \
      --json "$OUTDIR/.row.json" && cat "$OUTDIR/.row.json" >>"$OUTDIR/bench_steps.jsonl" || rc=1
    if ((torch)); then
      timeout "$limit" "$PYTHON" "$ROOT/tools/bench_torch.py" --device "$DEVICE" --workload "$w" \
        --steps "$STEPS" --warmup "$WARMUP" --json "$OUTDIR/.row.json" &&
        cat "$OUTDIR/.row.json" >>"$OUTDIR/bench_steps.jsonl" || rc=1
    fi
  done
  rm -f "$OUTDIR/.row.json"
  exit $rc
}

bench_models() {
  need_dualflow
  local samples=20
  ((REHEARSE)) && samples=2
  "$DUALFLOW" bench models --device "$DEVICE" --samples "$samples" --json "$OUTDIR/bench_models.jsonl"
}

memcheck() {
  ((REHEARSE)) && { echo "rehearsal: no GPU to check"; exit 77; }
  command -v compute-sanitizer >/dev/null || { echo "compute-sanitizer: not found"; exit 77; }
  [[ -x $BUILD/tests/test_engine ]] || { echo "no test_engine"; exit 77; }
  compute-sanitizer --tool memcheck --error-exitcode 3 --leak-check no \
    "$BUILD/tests/test_engine" --cuda-only "[cuda]"
}
export -f inventory configure build provenance cuda_tests bench_kernels bench_steps bench_models memcheck

# cuDNN: the toolkit's, else the pip wheel's (nvidia-cudnn-cu13 ships libcudnn.so.9 and headers).
if ((!REHEARSE)); then
  cudnn_h=$(ls /usr/local/cuda/include/cudnn.h /usr/include/cudnn.h /usr/include/x86_64-linux-gnu/cudnn.h 2>/dev/null | head -n 1)
  if [[ -z $cudnn_h ]]; then
    for site in $(timeout 30 "$PYTHON" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
      [[ -d $site/nvidia ]] && cudnn_h=$(find "$site/nvidia" -name cudnn.h 2>/dev/null | head -n 1)
      [[ -n $cudnn_h ]] && break
    done
  fi
  if [[ -n $cudnn_h ]]; then
    export CUDNN_INCLUDE_DIR=$(dirname "$cudnn_h")
    lib_dir=$(dirname "$CUDNN_INCLUDE_DIR")/lib
    export CUDNN_LIBRARY=$(ls "$lib_dir"/libcudnn.so "$lib_dir"/libcudnn.so.* /usr/local/cuda/lib64/libcudnn.so \
      /usr/lib/x86_64-linux-gnu/libcudnn.so 2>/dev/null | head -n 1)
    [[ -n $CUDNN_LIBRARY ]] && export LD_LIBRARY_PATH=$(dirname "$CUDNN_LIBRARY")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  fi
fi

echo "== [$(elapsed)s] unpacking .device/bundle.tar.xz"
if [[ ! -f $ROOT/.device/bundle.tar.xz ]]; then
  echo "check: no .device/bundle.tar.xz: run tools/device/prepare.sh here and carry .device" >&2
  exit 1
fi
rm -rf "$BUNDLE_ROOT" && mkdir -p "$BUNDLE_ROOT" && tar -C "$BUNDLE_ROOT" -xJf "$ROOT/.device/bundle.tar.xz" || exit 1
# The bundle's shared libraries at run time (libopenblas needs its gfortran runtime beside it).
export LD_LIBRARY_PATH=$PREFIX/lib/x86_64-linux-gnu:$PREFIX/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
[[ -d /usr/local/cuda/lib64 ]] && export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:/usr/local/cuda/lib64

stage inventory 30 inventory
stage configure 120 configure
stage build 330 build
stage provenance 20 provenance
stage cuda_tests 150 cuda_tests
stage bench_kernels 60 bench_kernels
stage bench_steps 150 bench_steps
stage bench_models 60 bench_models
stage memcheck 150 memcheck

echo "== [$(elapsed)s] report"
timeout 20 "$PYTHON" "$ROOT/tools/device/report.py" "$OUTDIR" --budget "$budget" --device "$DEVICE" ||
  timeout 20 python3 "$ROOT/tools/device/report.py" "$OUTDIR" --budget "$budget" --device "$DEVICE"
echo "== [$(elapsed)s] done: $OUTDIR"
