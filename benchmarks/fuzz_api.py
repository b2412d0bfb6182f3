"""The long API fuzz: Schemathesis (every check, positive and negative cases) against a live server.

The same target and settings as tests/e2e/test_fuzz_api.py (`video-pipelines serve` on a fresh
PostgreSQL database, tests/schemathesis.toml, tests/fuzz_hooks.py), with many more cases:
--max-examples per operation and phase, or --max-time seconds of fuzzing and stateful runs
repeated until it is spent. Prints the case count, the answers by operation and status, the
share of schema-valid plans accepted (202), and Schemathesis' report; with failures, each one
with the curl that reproduces it. Exits 1 when a check failed or something answered 5xx.

Run from the repository root: python benchmarks/fuzz_api.py [--max-examples 300] [--max-time 600] [--seed N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz import fuzz_target, run_fuzz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-examples", type=int, default=300, help="cases per operation and phase")
    parser.add_argument("--max-time", type=int, help="seconds to spend, fuzzing and stateful runs repeated")
    parser.add_argument("--seed", type=int, help="Schemathesis' seed, to replay a run")
    args = parser.parse_args()
    extra: list[str] = []
    if args.max_time:
        extra += ["--max-time", str(args.max_time)]
    if args.seed is not None:
        extra += ["--seed", str(args.seed)]

    with tempfile.TemporaryDirectory(prefix="vp-fuzz-") as scratch, fuzz_target(Path(scratch)) as target:
        started = time.monotonic()
        result = run_fuzz(target, max_examples=args.max_examples, folder=Path(scratch) / "st", extra=tuple(extra))
        elapsed = time.monotonic() - started
        print(result.report)
        print("answers (operation, mode, status): count")
        for (operation, mode, status), count in sorted(result.statuses.items()):
            print(f"  {operation:<70} {mode:<9} {status}: {count}")
        print(f"{result.summary()} in {elapsed:.0f} s")
    sys.exit(0 if result.passed and result.server_errors == 0 else 1)


if __name__ == "__main__":
    main()
