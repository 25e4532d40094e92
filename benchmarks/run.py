"""Run the benchmarks standalone: ``python benchmarks/run.py [--out DIR] [--sizes N ...] [--quick]``.

The same as ``knee-assistant bench``; figures go to DIR/bench.json and
DIR/bench.md with PNG plots (see docs/benchmarks.md for a recorded run).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant.bench import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
