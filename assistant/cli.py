"""``knee-assistant`` / ``python -m assistant``: every job from the terminal.

Subcommands: ``index build|update|status``, ``search``, ``ask``, ``chat``,
``eval``, ``bench``, ``serve``. Errors a user can act on print one line and
exit 1 (2 for bad usage); never a traceback. Importing this module and
``--help`` do not import torch or load a model.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import AssistantError
from .settings import FUSIONS, RETRIEVERS, Settings


def _common(parser: argparse.ArgumentParser, retrieval: bool = False) -> None:
    g = parser.add_argument_group("settings (each also read from KNEE_<NAME> in the environment)")
    g.add_argument("--index", dest="index_dir", metavar="DIR", help="index directory (default: index/)")
    g.add_argument("--corpus", dest="corpus", metavar="PATH", nargs="+",
                   help="corpus directories or files (default: corpus/)")
    g.add_argument("--model", metavar="NAME_OR_PATH",
                   help="embedding model: packaged:all-MiniLM-L6-v2 (default), a local path, or a hub id")
    if retrieval:
        g.add_argument("--retriever", choices=RETRIEVERS, help="retrieval mode (default: hybrid)")
        g.add_argument("--k", type=int, metavar="N", help="passages to retrieve (default: 5)")
        g.add_argument("--fusion", choices=FUSIONS,
                       help="how hybrid retrieval combines dense and BM25: convex (weighted sum of "
                            "scores, default) or rrf (reciprocal rank fusion)")
        g.add_argument("--reranker", metavar="NAME_OR_PATH",
                       help="optional cross-encoder that reorders the top candidates: a local path, "
                            "or a hub id with a network (default: none)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="knee-assistant",
        description="Answers knee questions strictly from a curated collection, with citations.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p_index = sub.add_parser("index", help="build, update or check the index")
    isub = p_index.add_subparsers(dest="index_command", metavar="ACTION")
    isub.required = True
    for name, help_text in (("build", "build the index from scratch"),
                            ("update", "re-embed only added or changed documents; drop removed ones"),
                            ("status", "what is indexed and whether it is stale")):
        p = isub.add_parser(name, help=help_text, description=help_text)
        _common(p)
        p.add_argument("--json", action="store_true", help="print JSON")
        if name != "status":
            p.add_argument("--strict", action="store_true", default=None,
                           help="fail (keeping the previous index) if any file cannot be read")
            p.add_argument("--chunk-tokens", dest="chunk_max_tokens", type=int, metavar="N",
                           help="maximum tokens per chunk (default: 96)")
            p.add_argument("--overlap", dest="chunk_overlap_sentences", type=int, metavar="N",
                           help="sentences shared by consecutive chunks of a paragraph (default: 1)")

    p = sub.add_parser("search", help="print the passages ranked for a question",
                       description="Print the passages ranked for a question (or a batch of them).")
    p.add_argument("question", nargs="?", help="the question (omit with --batch)")
    _common(p, retrieval=True)
    p.add_argument("--history", metavar="FILE", help="JSON list of earlier {role, content} turns")
    p.add_argument("--batch", metavar="FILE.jsonl", help="cases with id, question, optional history")
    p.add_argument("--out", metavar="FILE.jsonl", help="with --batch: write here (default: stdout)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("ask", help="answer one question (guarded, cited)",
                       description="Answer one question with guardrails and citations.")
    p.add_argument("question")
    _common(p, retrieval=True)
    p.add_argument("--history", metavar="FILE", help="JSON list of earlier {role, content} turns")
    p.add_argument("--json", action="store_true", help="print the whole reply as JSON")

    p = sub.add_parser("chat", help="interactive chat in the terminal")
    _common(p, retrieval=True)

    p = sub.add_parser("eval", help="run evaluation question sets",
                       description="Run question sets (shared/EVAL-FORMAT.md) and write the reports. With "
                                   "several sets, each is written to DIR/<set name>/ and DIR/summary.md "
                                   "puts them side by side.")
    p.add_argument("questions", nargs="+", help="question sets, JSON Lines")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    _common(p, retrieval=True)
    p.add_argument("--thresholds", metavar="FILE.json",
                   help="fail (exit 1) when a figure is below these thresholds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print summary.json to stdout")

    p = sub.add_parser("bench", help="measure speed, scale and memory",
                       description="Run the benchmarks and write bench.json and bench.md.")
    p.add_argument("--out", default="bench-out", metavar="DIR", help="output folder (default: bench-out/)")
    p.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    p.add_argument("--sizes", type=int, nargs="+", metavar="N",
                   help="collection sizes (chunks) for the scale section (default: 10000 100000 1000000)")
    _common(p, retrieval=True)

    p = sub.add_parser("serve", help="start the web chat (same as python app.py)")
    _common(p)
    p.add_argument("--host", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: 7860)")
    p.add_argument("--share", action="store_true", default=None, help="create a public Gradio link")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {}
    for name in ("index_dir", "model", "retriever", "fusion", "k", "reranker", "strict", "chunk_max_tokens",
                 "chunk_overlap_sentences", "host", "port", "share"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    corpus = getattr(args, "corpus", None)
    if corpus and len(corpus) == 1 and Path(corpus[0]).is_dir():
        overrides["corpus_dir"] = corpus[0]
    return Settings.from_env(**overrides)


def _corpus_paths(args, settings: Settings) -> list[str]:
    return list(args.corpus) if getattr(args, "corpus", None) else [settings.corpus_dir]


def _read_history(path: str | None) -> list[dict]:
    if not path:
        return []
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AssistantError(f"{path}: cannot read history ({exc})") from None
    if not isinstance(data, list) or not all(isinstance(t, dict) for t in data):
        raise AssistantError(f"{path}: history must be a JSON list of {{\"role\", \"content\"}} objects")
    return data


class _Bar:
    """A tqdm bar per stage, on stderr (progress(stage, done, total))."""

    #: stage -> (label, unit)
    UNITS = {"chunking": ("chunking", " docs"), "embedding": ("embedding", " chunks"),
             "adapter": ("query adapter", " fit")}

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bars: dict = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled or stage not in self.UNITS:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            for earlier in self.bars.values():  # a stage ends when the next begins: its time stops there
                earlier.close()
            bar = self.bars[stage] = tqdm(total=total, desc=self.UNITS[stage][0], unit=self.UNITS[stage][1],
                                          file=sys.stderr, leave=True, dynamic_ncols=True)
        bar.total = total
        bar.n = done
        bar.refresh()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def cmd_index(args, settings: Settings) -> int:
    from .index import build_index, index_status

    if args.index_command == "status":
        status = index_status(settings, _corpus_paths(args, settings))
        if args.json:
            print(json.dumps(status.to_json(), indent=2))
            return 0
        print(format_status(status))
        return 0

    from .embedding import Embedder

    embedder = Embedder(settings.model, settings.device, settings.batch_size)
    bar = _Bar(enabled=not args.json)
    try:
        report = build_index(settings, embedder, _corpus_paths(args, settings),
                             incremental=args.index_command == "update", progress=bar)
    finally:
        bar.close()
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0
    for skipped in report.skipped:
        print(f"skipped {skipped.path}: {skipped.reason}", file=sys.stderr)
    if report.full_rebuild:
        print(f"built {report.index_dir}/ ({report.generation}): {report.documents} documents, "
              f"{report.chunks} chunks in {report.seconds:.1f} s")
    else:
        print(f"updated {report.index_dir}/ ({report.generation}): {len(report.added)} added, "
              f"{len(report.changed)} changed, {len(report.removed)} removed, {report.unchanged} unchanged; "
              f"embedded {report.embedded_chunks} of {report.chunks} chunks in {report.seconds:.1f} s")
        for label, items in (("added", report.added), ("changed", report.changed), ("removed", report.removed)):
            for item in items:
                print(f"  {label}: {item}")
    if report.adapter_pairs:
        from .adapter import question_files

        print(f"query adapter: learned from {report.adapter_pairs} answerable questions "
              f"in {len(question_files(settings.adapter_questions))} question sets")
    if report.note:
        print(f"note: {report.note}")
    return 0


def format_status(status) -> str:
    lines = [f"index {status.index_dir}/"]
    if not status.exists:
        lines.append("  no index yet: run `knee-assistant index build`")
        return "\n".join(lines)
    if status.problem:
        lines.append(f"  problem: {status.problem}")
        return "\n".join(lines)
    lines.append(f"  {status.documents} documents, {status.chunks} chunks, model {status.model}")
    lines.append(f"  built {status.built_at} ({status.generation})")
    for label, items in (("added since", status.added), ("changed since", status.changed),
                         ("removed since", status.removed), ("settings changed", status.settings_changed)):
        for item in items:
            lines.append(f"  {label}: {item}")
    for skipped in status.skipped:
        lines.append(f"  unreadable: {skipped.path}: {skipped.reason}")
    lines.append("  stale: run `knee-assistant index update`" if status.stale else "  up to date")
    return "\n".join(lines)


def _hit_json(hit) -> dict:
    return {"rank": hit.rank, "chunk_id": hit.chunk.chunk_id, "source": hit.chunk.source,
            "title": hit.chunk.title, "score": round(hit.score, 6),
            "dense_score": None if hit.dense_score is None else round(hit.dense_score, 6),
            "bm25_score": None if hit.bm25_score is None else round(hit.bm25_score, 6),
            "start": hit.chunk.start, "end": hit.chunk.end, "text": hit.chunk.text}


def load_batch(path: str) -> list[dict]:
    """Cases with ``id``, ``question`` and optional ``history``; errors name file:line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AssistantError(f"{path}: cannot read ({exc})") from None
    cases = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except ValueError as exc:
            raise AssistantError(f"{path}:{lineno}: not valid JSON ({exc})") from None
        if not isinstance(case, dict) or not isinstance(case.get("question"), str) or "id" not in case:
            raise AssistantError(f"{path}:{lineno}: needs an object with \"id\" and a \"question\" string")
        if not isinstance(case.get("history", []), list):
            raise AssistantError(f"{path}:{lineno}: \"history\" must be a list of {{role, content}} turns")
        cases.append(case)
    return cases


def cmd_search(args, settings: Settings) -> int:
    from .pipeline import Assistant

    if not args.batch and not args.question:
        raise AssistantError("give a QUESTION or --batch FILE.jsonl")
    cases = load_batch(args.batch) if args.batch else []  # validate before loading anything heavy
    retriever = Assistant.from_settings(settings).retriever
    if args.batch:
        out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
        try:
            for case in cases:
                hits = retriever.search(case["question"], case.get("history") or [])
                out.write(json.dumps({"id": case["id"], "retrieved": [_hit_json(h) for h in hits]},
                                     ensure_ascii=False) + "\n")
        finally:
            if args.out:
                out.close()
        return 0
    history = _read_history(args.history)
    query = retriever.prepare_query(args.question, history)
    hits = retriever.search_prepared(query, question=args.question)
    if args.json:
        print(json.dumps({"question": args.question, "query": query,
                          "retrieved": [_hit_json(h) for h in hits]}, indent=2, ensure_ascii=False))
        return 0
    if query != args.question:
        print(f"(searched for: {query})")
    if not hits:
        print("no passages found")
    for hit in hits:
        print(f"[{hit.rank}] {hit.score:.4f}  {hit.chunk.title} ({hit.chunk.source}, "
              f"chars {hit.chunk.start}-{hit.chunk.end})")
        print("    " + hit.chunk.text.replace("\n", "\n    "))
    return 0


def reply_json(reply) -> dict:
    return {"decision": str(reply.decision), "text": reply.text, "reason": reply.reason, "query": reply.query,
            "citations": [asdict(c) for c in reply.citations],
            "retrieved": [_hit_json(h) for h in reply.retrieved], "timings_ms": reply.timings}


def format_reply(reply) -> str:
    lines = [reply.text]
    if reply.citations:
        lines.append("")
        lines.append("Sources:")
        for c in reply.citations:
            lines.append(f"  [{c.n}] {c.title} ({c.source})")
            lines.append("      " + c.text.replace("\n", " "))
    return "\n".join(lines)


def cmd_ask(args, settings: Settings) -> int:
    from .pipeline import Assistant

    reply = Assistant.from_settings(settings).respond(args.question, _read_history(args.history))
    print(json.dumps(reply_json(reply), indent=2, ensure_ascii=False) if args.json else format_reply(reply))
    return 0


#: chat commands: what ends the chat, and what starts a new conversation
CHAT_QUIT = frozenset({"/quit", "/exit", "/q", "quit", "exit"})
CHAT_NEW = frozenset({"/new", "/reset", "/clear"})


def cmd_chat(args, settings: Settings) -> int:
    from .pipeline import Assistant

    assistant = Assistant.from_settings(settings)
    history: list[dict] = []
    print("Knee Assistant (educational information, not a diagnosis). "
          "Empty line, /quit or Ctrl-D to quit; /new starts a new conversation.")
    while True:
        try:
            question = input("\nyou> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        command = question.strip().lower()
        if not command or command in CHAT_QUIT:
            return 0
        if command in CHAT_NEW:
            history = []
            print("(new conversation: earlier questions are forgotten)")
            continue
        reply = assistant.respond(question, history)
        print("\n" + format_reply(reply))
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": reply.text}]


def cmd_eval(args, settings: Settings) -> int:
    from .evaluation import check_thresholds, load_cases, run_eval, sets_report
    from .pipeline import Assistant

    # every set is validated before anything heavy is loaded
    sets = {name: (path, load_cases(path)) for name, path in _set_names(args.questions).items()}
    thresholds = None
    if args.thresholds:
        try:
            thresholds = json.loads(Path(args.thresholds).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AssistantError(f"{args.thresholds}: cannot read thresholds ({exc})") from None
    assistant = Assistant.from_settings(settings)
    several = len(sets) > 1
    summaries, problems = {}, []
    for name, (path, cases) in sets.items():
        config = {"retriever": settings.retriever, "fusion": settings.fusion, "reranker": settings.reranker or None,
                  "k": settings.k, "model": settings.model,
                  "index": settings.index_dir, "chunking": {"max_tokens": settings.chunk_max_tokens,
                                                            "overlap_sentences": settings.chunk_overlap_sentences},
                  "questions": path}
        out = Path(args.out) / name if several else Path(args.out)
        summary = run_eval(assistant.respond, cases, out, progress=not args.no_progress, config=config)
        summaries[name] = summary
        if thresholds is not None:
            problems += [f"{name}: {p}" if several else p for p in check_thresholds(summary, thresholds)]
        if not args.json:
            print(("" if not several else f"{name}: ") + _eval_line(summary))
            print(f"report: {out / 'summary.md'}")
    if several:
        report = Path(args.out) / "summary.md"
        report.write_text("# Evaluation: question sets side by side\n\n"
                          "Each set's own report is in its folder; the last row adds up the counts of all sets.\n\n"
                          + sets_report(summaries), encoding="utf-8")
        (Path(args.out) / "sets.json").write_text(json.dumps(summaries, indent=2), encoding="utf-8")
        if not args.json:
            print(f"all sets: {report}")
    if args.json:
        print(json.dumps(summaries if several else summaries[next(iter(summaries))], indent=2))
    for problem in problems:
        print(f"below threshold: {problem}", file=sys.stderr)
    if problems:
        return 1
    if thresholds is not None:
        print(f"all thresholds in {args.thresholds} met")
    return 0


def _set_names(paths: Sequence[str]) -> dict[str, str]:
    """A folder name for each question set: its file name without ``.jsonl``,
    numbered when two sets share one."""
    names: dict[str, str] = {}
    for path in paths:
        base = Path(path).name.removesuffix(".jsonl") or "set"
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names[name] = path
    return names


def _eval_line(summary: dict) -> str:
    def f(value, digits=3):  # a figure with nothing to measure is None
        return "n/a" if value is None else f"{value:.{digits}f}"

    declined = summary.get("in_scope_declined") or {}
    return (f"{summary['passed']}/{summary['cases']} passed; decision accuracy "
            f"{f(summary['decision_accuracy'])}; recall@1 {f(summary['recall_at_k'].get('1'))}, "
            f"@3 {f(summary['recall_at_k'].get('3'))}; MRR {f(summary['mrr'])}; citation support "
            f"{f(summary['citation_support'])}; follow-up {f(summary['followup_rate'])}; "
            f"in-scope declined {declined.get('count', 'n/a')}/{declined.get('of', 'n/a')}; "
            f"p50 {f(summary['latency_ms'].get('p50'), 0)} ms")


def cmd_bench(args, settings: Settings) -> int:
    from .bench import run_bench

    run_bench(settings, args.out, sizes=args.sizes, quick=args.quick)
    return 0


def cmd_serve(args, settings: Settings) -> int:
    from .webapp import serve

    return serve(settings) or 0


COMMANDS = {"index": cmd_index, "search": cmd_search, "ask": cmd_ask, "chat": cmd_chat,
            "eval": cmd_eval, "bench": cmd_bench, "serve": cmd_serve}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return COMMANDS[args.command](args, settings)
    except AssistantError as exc:
        problems = getattr(exc, "problems", None)
        if problems and len(problems) > 1:  # one line: the first problem, and how many more
            print(f"error: {problems[0]} (and {len(problems) - 1} more)", file=sys.stderr)
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
