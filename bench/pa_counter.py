"""One counter of perf_analyzer work for every search a bench compares.

Searches count "measurements" in their own units: a Model Analyzer config is one perf_analyzer
run of as many windows as it takes to settle, an InferOps point is one or more duel slices (a
perf_analyzer run each). To compare their cost in one unit, each search is handed its own copy
of a wrapper around the real perf_analyzer (InferOps through $INFEROPS_PERF_ANALYZER, Model
Analyzer through its perf_analyzer_path). The wrapper execs the real binary, passes its stdout
and stderr through, and appends one JSON line per invocation to its log: start and end (epoch
seconds), exit status, and the measurement windows it ran.

Windows are counted from the "  Pass [N] throughput: ..." line perf_analyzer prints per window,
which it prints only in verbose mode (-v; -v -v would also log every request). So the wrapper
adds one -v when the caller gave none and undoes what -v changes in the output (seen with the
tritonclient 2.44 perf_analyzer over gRPC): it drops the Pass lines and the summary's "Avg client
overhead" line, and writes the gRPC time line back in its non-verbose form, so the caller reads
the output it would have read without the wrapper. Verbose mode adds a print per window and
nothing to the load. Neither caller parses stdout for results anyway (InferOps reads
perf_analyzer's CSV and profile export, Model Analyzer its CSV; it scans stdout for errors).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

# Runs under the bench's own interpreter; only the standard library. Its stdout is read line by
# line and written straight on, so the caller (Model Analyzer parses it) sees what it would have.
WRAPPER = '''#!{python}
import json, re, signal, subprocess, sys, time
REAL, LOG = {real!r}, {log!r}
started = time.time()
windows = 0
args = sys.argv[1:]
asked_verbose = any(a in ("-v", "--verbose") for a in args)
child = subprocess.Popen([REAL, *args, *(() if asked_verbose else ("-v",))], stdout=subprocess.PIPE)  # stderr: inherited, untouched
# A caller that stops perf_analyzer (a timeout) signals this process: pass it on, never orphan the run.
for number in (signal.SIGTERM, signal.SIGINT):
    signal.signal(number, lambda signum, frame: child.send_signal(signum))
GRPC = re.compile(rb"(\\s*Avg gRPC time: \\d+ usec) \\(marshal (\\d+) usec \\+ response wait (\\d+) usec \\+ unmarshal (\\d+) usec\\)")
for line in child.stdout:
    if re.match(rb"\\s*Pass \\[\\d+\\] throughput", line):
        windows += 1
        if not asked_verbose:
            continue
    if not asked_verbose:
        if re.match(rb"\\s*Avg client overhead:", line):
            continue
        if (grpc := GRPC.match(line)):
            head, marshal, wait, unmarshal = grpc.groups()
            line = head + b" ((un)marshal request/response %d usec + response wait %s usec)\\n" % (int(marshal) + int(unmarshal), wait)
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
status = child.wait()
with open(LOG, "a") as log:
    log.write(json.dumps({{"start": started, "end": time.time(), "exit": status, "windows": windows, "argv": args}}) + "\\n")
sys.exit(status)
'''


def counting_wrapper(directory: Path, name: str, real: str) -> tuple[Path, Path]:
    """Write `directory/perf_analyzer-<name>` wrapping `real`; return it and its log's path."""
    directory.mkdir(parents=True, exist_ok=True)
    wrapper, log = directory / f"perf_analyzer-{name}", directory / f"perf_analyzer-{name}.log"
    wrapper.write_text(WRAPPER.format(python=sys.executable, real=str(Path(real).expanduser()), log=str(log)))
    wrapper.chmod(0o755)
    return wrapper, log


@dataclass(frozen=True)
class PerfAnalyzerWork:
    runs: int = 0
    failed: int = 0
    windows: int = 0
    seconds: float = 0.0  # summed over the runs, start to exit: load plus each run's start-up and connect

    @classmethod
    def of(cls, log: Path) -> "PerfAnalyzerWork":
        if not log.exists():
            return cls()
        entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        return cls(
            runs=len(entries),
            failed=sum(e["exit"] != 0 for e in entries),
            windows=sum(e["windows"] for e in entries),
            seconds=sum(e["end"] - e["start"] for e in entries),
        )
