"""Autobahn verdict over a kosoku/Autobahn report folder.

Usage: python autobahn_verdict.py REPORTS_DIR [--tolerate-kosoku-13]
Prints one line `autobahn: total=N OK=.. NON-STRICT=.. ...` and the failing cases, and exits
0 only if no case is FAILED or ERROR (Autobahn's own passing verdicts: OK, NON-STRICT,
INFORMATIONAL, UNIMPLEMENTED). With --tolerate-kosoku-13, ERROR in 13.{2,5,6,7}.{1,2,3} is
tolerated: a known kosoku 0.1.0 py3 bug ("Strings must be encoded before hashing"), not a
fault of the peer under test. Exits 2 when the report is missing or empty.
"""

import collections
import json
import os
import re
import sys

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"}
KOSOKU_BUG = re.compile(r"^13\.[2567]\.[123]$")


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    tolerate = "--tolerate-kosoku-13" in sys.argv[1:]
    if len(args) != 1:
        print("usage: autobahn_verdict.py REPORTS_DIR [--tolerate-kosoku-13]", file=sys.stderr)
        return 2
    index = os.path.join(args[0], "index.json")
    try:
        with open(index, encoding="utf-8") as f:
            idx = json.load(f)
    except (OSError, ValueError) as e:
        print(f"autobahn: no readable report at {index}: {e}", file=sys.stderr)
        return 2
    counts = collections.Counter()
    bad = []
    for cases in idx.values():
        for cid, result in cases.items():
            behavior = result.get("behavior", "MISSING")
            counts[behavior] += 1
            if behavior in PASSING:
                continue
            if tolerate and behavior == "ERROR" and KOSOKU_BUG.match(cid):
                continue
            bad.append(f"{cid}={behavior}")
    total = sum(counts.values())
    summary = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    print(f"autobahn: total={total} {summary} failing={len(bad)}")
    if bad:
        print("failing cases: " + ", ".join(sorted(bad)))
    if total == 0:
        return 2
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
