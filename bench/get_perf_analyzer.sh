#!/bin/sh
# Install NVIDIA's perf_analyzer for CPU use (the tritonclient 2.44 wheel's binary and libcudart,
# beside the project's own tritonclient; Debian's libb64-0d must be installed): see
# operator/inferops/devcluster/perf_analyzer.py, which the optimizer image's build also uses.
#
#   sh bench/get_perf_analyzer.sh [DIR]      (default ~/.cache/inferops/perf_analyzer; prints the wrapper)
#   export INFEROPS_PERF_ANALYZER=DIR/perf_analyzer
exec "${PYTHON:-.venv/bin/python}" -m inferops.devcluster.perf_analyzer "$@"
