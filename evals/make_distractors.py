"""Write a JSONL corpus of unrelated documents, to test retrieval under noise.

The documents are the docstrings of Python's standard library (real English
prose about programming, nothing about knees), one record per module, class
or function with a docstring of at least 200 characters.

    python evals/make_distractors.py --n 3000 --out evals/runs/distractors/unrelated.jsonl
    knee-assistant index build --index evals/runs/distractors/index \
        --corpus corpus evals/runs/distractors/unrelated.jsonl
    knee-assistant eval evals/questions.jsonl --index evals/runs/distractors/index \
        --out evals/runs/distractors/report
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import pkgutil
import sys
import warnings
from pathlib import Path

MODULES = sorted(m for m in sys.stdlib_module_names if not m.startswith("_") and m not in (
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3", "ensurepip", "venv"))


def docstrings(limit: int):
    seen = set()
    for name in MODULES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = importlib.import_module(name)
        except Exception:
            continue
        items = [(name, module)] + [(f"{name}.{attr}", getattr(module, attr, None)) for attr in dir(module)
                                    if not attr.startswith("_")]
        for qualname, obj in list(items):  # and the methods of its classes
            if inspect.isclass(obj):
                items += [(f"{qualname}.{attr}", getattr(obj, attr, None)) for attr in dir(obj)
                          if not attr.startswith("_")]
        for qualname, obj in items:
            doc = inspect.getdoc(obj) if obj is not None else None
            if not doc or len(doc) < 200 or doc in seen:
                continue
            seen.add(doc)
            yield {"id": qualname, "title": qualname, "text": doc}
            if len(seen) >= limit:
                return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="number of documents (default 3000)")
    parser.add_argument("--out", required=True, help="output JSONL file")
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with out.open("w", encoding="utf-8") as f:
        for record in docstrings(args.n):
            f.write(json.dumps(record) + "\n")
            count += 1
    print(f"wrote {count} unrelated documents to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
