"""How the optimization Job ends, shared by the optimizer (which exits) and the operator (which
reads the exit code and termination message of the failed pod)."""

from __future__ import annotations

EXIT_TRANSIENT = 1  # storage unreachable: the Job's backoffLimit retries it
EXIT_ERROR = 2  # bad input: model, data, storage, recipe; the same on every try
EXIT_GATE = 3  # the accuracy gate: the optimized model broke the budget
FINAL_EXIT_CODES = (EXIT_ERROR, EXIT_GATE)
# Condition reasons for the final exit codes (Optimized=False, Ready=False).
REASON_OF_EXIT = {EXIT_ERROR: "InvalidInput", EXIT_GATE: "AccuracyBudgetExceeded"}

OPTIMIZER_CONTAINER = "optimize"
TERMINATION_LOG = "/dev/termination-log"
# Where the optimizer writes a one-line reason when it fails; unset (a run by hand), it writes none.
TERMINATION_LOG_ENV = "INFEROPS_TERMINATION_LOG"
TERMINATION_MESSAGE_MAX = 1024  # well under the kubelet's 4096 bytes per container
# On success the optimizer's termination message is PUBLISHED_PREFIX + the digest of what it
# published (storage/digest.py), which the operator checks the stored report.json against.
PUBLISHED_PREFIX = "published "
