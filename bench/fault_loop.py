"""The fault tests again and again: restart, kill -9 and two workers, N rounds in a row (issue 16).

    .venv/bin/python bench/fault_loop.py --rounds 10
    .venv/bin/python bench/fault_loop.py --rounds 3 --keep-going

One round is one pytest run of every test in tests/integration/test_restart.py and
test_two_workers.py, and the kill -9 and leave-during-backfill tests of test_backfill.py, each
round on its own freshly started broker (the session fixture). A flaky loss or commit shows as
a failure in some round, not in the first; that is why this runs them in a row. Stops at the
first failing round unless --keep-going. Each round's pytest output is kept under
WORKDIR/fault-loop-<time>/round-NN.log; prints one line a round and a markdown row at the end.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BACKFILL = "tests/integration/test_backfill.py::"
FAULT_TESTS = (
    "tests/integration/test_restart.py",
    "tests/integration/test_two_workers.py",
    BACKFILL + "test_a_backfill_with_the_worker_killed_in_the_middle_counts_every_line_once",
    BACKFILL + "test_a_worker_leaving_during_a_backfill_hands_back_partitions_that_count_every_line_once",
    BACKFILL + "test_a_300000_event_backlog_with_the_worker_killed_in_the_middle_leaves_every_sku_day_exact",
)

SUMMARY = re.compile(r"^=* ?(\d+ (?:passed|failed|errors?)\b.*?) in [\d.]+s", re.MULTILINE)


def run_round(number: int, directory: Path) -> tuple[bool, str, float]:
    """One pytest run of the fault tests; its verdict, pytest's summary line and seconds taken."""
    log = directory / f"round-{number:02d}.log"
    started = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE", *FAULT_TESTS],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )
    seconds = time.monotonic() - started
    found = SUMMARY.findall(log.read_text())
    summary = found[-1] if found else f"no summary (pytest exit {result.returncode}), see {log}"
    return result.returncode == 0, summary, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--keep-going", action="store_true", help="run every round even after a failure")
    parser.add_argument("--workdir", type=Path, default=ROOT / "var")
    args = parser.parse_args()

    directory = args.workdir / f"fault-loop-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    directory.mkdir(parents=True)
    print(f"logs under {directory}", flush=True)
    passed_in_a_row, verdicts = 0, []
    for number in range(1, args.rounds + 1):
        ok, summary, seconds = run_round(number, directory)
        verdicts.append(ok)
        passed_in_a_row = passed_in_a_row + 1 if ok else 0
        print(f"round {number:2d}: {'PASS' if ok else 'FAIL'}  {summary}  ({seconds:.0f} s)", flush=True)
        if not ok and not args.keep_going:
            break
    print(f"\n| rounds run | passed | longest run of passes at the end |\n|---:|---:|---:|\n"
          f"| {len(verdicts)} | {sum(verdicts)} | {passed_in_a_row} |")
    return 0 if all(verdicts) and len(verdicts) == args.rounds else 1


if __name__ == "__main__":
    raise SystemExit(main())
