#!/bin/sh
# Install NVIDIA's perf_analyzer for CPU use, without installing tritonclient 2.44 over the project's:
# the manylinux1 tritonclient 2.44 wheel ships the binary in its data/bin; it needs Debian's
# libb64-0d and libcudart.so.12 (from the nvidia-cuda-runtime-cu12 wheel), and runs on a CPU.
#
#   sh bench/get_perf_analyzer.sh [DIR]      (default ~/.cache/inferops/perf_analyzer)
#   export INFEROPS_PERF_ANALYZER=DIR/perf_analyzer
#
# DIR/perf_analyzer is a wrapper that puts the library on LD_LIBRARY_PATH (Model Analyzer hands
# perf_analyzer the server's environment, so point it at the wrapper too).
set -eu
DIR=${1:-$HOME/.cache/inferops/perf_analyzer}
PIP=${PIP:-pip}
if [ -x "$DIR/perf_analyzer" ]; then echo "$DIR/perf_analyzer"; exit 0; fi
if ! dpkg -s libb64-0d >/dev/null 2>&1; then
  echo "perf_analyzer needs libb64-0d: apt-get install -y libb64-0d" >&2; exit 1
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
$PIP download -q --no-deps --only-binary=:all: --platform manylinux1_x86_64 -d "$WORK" 'tritonclient==2.44.0'
$PIP download -q --no-deps --only-binary=:all: --platform manylinux2014_x86_64 -d "$WORK" 'nvidia-cuda-runtime-cu12'
mkdir -p "$WORK/out/bin" "$WORK/out/lib"
python3 - "$WORK" <<'PY'
import sys, zipfile, glob, os
work = sys.argv[1]
with zipfile.ZipFile(glob.glob(f"{work}/tritonclient-2.44.0-*.whl")[0]) as z:
    open(f"{work}/out/bin/perf_analyzer", "wb").write(z.read("tritonclient-2.44.0.data/data/bin/perf_analyzer"))
with zipfile.ZipFile(glob.glob(f"{work}/nvidia_cuda_runtime_cu12-*.whl")[0]) as z:
    open(f"{work}/out/lib/libcudart.so.12", "wb").write(z.read("nvidia/cuda_runtime/lib/libcudart.so.12"))
os.chmod(f"{work}/out/bin/perf_analyzer", 0o755)
PY
cat > "$WORK/out/perf_analyzer" <<SH
#!/bin/sh
LD_LIBRARY_PATH="$DIR/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$DIR/bin/perf_analyzer" "\$@"
SH
chmod +x "$WORK/out/perf_analyzer"
mkdir -p "$(dirname "$DIR")"
rm -rf "$DIR.partial" && mv "$WORK/out" "$DIR.partial" && mv -T "$DIR.partial" "$DIR"
"$DIR/perf_analyzer" --version >&2
echo "$DIR/perf_analyzer"
