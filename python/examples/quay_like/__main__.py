"""``python -m quay_like [--db-dir DIR] [--logs] SCENARIO.json...``: runs scenario files."""

import argparse
import sys
from pathlib import Path

from .scenario import print_report, run


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m quay_like",
        description="Runs tagguard scenario files against the Quay-like example registry.",
    )
    parser.add_argument("--db-dir", help="keep each scenario's SQLite database in DIR as "
                        "<scenario>.db (default: in memory)")
    parser.add_argument("--logs", action="store_true", help="print logentry3 after each scenario")
    parser.add_argument("scenarios", nargs="+")
    args = parser.parse_args(argv)
    passed = failed = 0
    for path in args.scenarios:
        db_path = ":memory:"
        if args.db_dir:
            Path(args.db_dir).mkdir(parents=True, exist_ok=True)
            db_path = Path(args.db_dir) / (Path(path).stem + ".db")
        report = run(path, db_path=db_path)
        print_report(report, path)
        if args.logs:
            print(f"-- logentry3 ({len(report.logs)} rows)")
            for row in report.logs:
                print(f"  {row['id']:>4} {row['datetime']} {row['kind']} {row['namespace']}/"
                      f"{row['repository'] or ''} by {row['performer']}: {row['metadata']}")
        failed += len(report.failures())
        passed += len(report.checks) - len(report.failures())
    total = passed + failed
    if failed:
        print(f"\n{passed} of {total} checks in {len(args.scenarios)} scenario(s) passed, {failed} failed")
        return 1
    print(f"\n{total} checks in {len(args.scenarios)} scenario(s) passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
