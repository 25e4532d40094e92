"""Serve the Knee Assistant web chat.

    python app.py [--index DIR] [--corpus DIR] [--host H] [--port P] [--share]

Loads the embedding model and the index once; a missing or stale index is
built (or updated) first, with a progress bar in the terminal. Settings come
from ``KNEE_*`` environment variables (and Gradio's ``GRADIO_SERVER_NAME`` /
``GRADIO_SERVER_PORT``), then these flags. Set ``KNEE_ADMIN_PASSWORD`` to
manage content from the browser. Same as ``knee-assistant serve``.
"""

from __future__ import annotations

import argparse
import logging
import sys


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="app.py", description="Serve the Knee Assistant web chat (default http://127.0.0.1:7860).")
    parser.add_argument("--index", metavar="DIR", help="index directory (default: index/, or KNEE_INDEX_DIR)")
    parser.add_argument("--corpus", metavar="DIR", help="corpus directory (default: corpus/, or KNEE_CORPUS_DIR)")
    parser.add_argument("--host", help="address to listen on (default: 127.0.0.1, or GRADIO_SERVER_NAME)")
    parser.add_argument("--port", type=int, help="port to listen on (default: 7860, or GRADIO_SERVER_PORT)")
    parser.add_argument("--share", action="store_true", default=None,
                        help="also serve through a temporary public Gradio link")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from assistant.errors import AssistantError
    from assistant.settings import Settings

    try:
        settings = Settings.from_env(index_dir=args.index, corpus_dir=args.corpus, host=args.host,
                                     port=args.port, share=args.share)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # Our own messages at INFO; the libraries' (faiss, httpx, ...) only when they matter.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("assistant").setLevel(logging.INFO)
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs each index build at DEBUG
    try:
        from assistant.webapp import serve

        return serve(settings)
    except AssistantError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
