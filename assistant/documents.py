"""Load corpus files into :class:`~assistant.schema.Document` records.

Formats: ``.txt``, ``.md`` (YAML front matter for ``title``/``source``),
``.html``/``.htm`` (readable text only: no scripts, styles or navigation),
``.pdf`` (text layer), and ``.jsonl`` corpora with one ``{"id", "title",
"text", ...}`` object per line (the BEIR corpus shape).

Guarantees:
- The source's wording is kept. Loading only normalises typography: curly
  quotes to straight ones, the stray ``”;`` left by a broken HTML entity, a
  missing space before an opening quote, line-end and trailing white space.
- Each document's id is derived from its path (and JSONL id), not its
  content, so an edited document keeps its id; ``content_hash`` changes.
- A file that cannot be read is reported as a :class:`Skipped` record with a
  reason; :func:`load_corpus` never raises for one bad file unless
  ``strict`` is set.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .errors import InvalidDocumentError
from .schema import Document

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".jsonl")

#: Files larger than this are skipped: a patient-education page is far smaller.
MAX_FILE_BYTES = 50 * 1024 * 1024

# HTML elements that are never part of the readable article.
_HTML_DROP = ("script", "style", "noscript", "nav", "header", "footer", "aside",
              "form", "iframe", "svg", "button", "template")


@dataclass(frozen=True)
class Skipped:
    """A corpus file that was not loaded, and why (one line)."""

    path: str
    reason: str


@dataclass(frozen=True)
class Corpus:
    """What :func:`load_corpus` found: the documents and the skipped files."""

    documents: tuple[Document, ...]
    skipped: tuple[Skipped, ...]


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_doc_id(source: str) -> str:
    """A readable, stable id from a source path: ``slug-<8 hex of path>``."""
    slug = re.sub(r"[^a-z0-9]+", "-", Path(source).stem.lower()).strip("-")[:40] or "doc"
    return f"{slug}-{hashlib.sha1(source.encode('utf-8')).hexdigest()[:8]}"


_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‟": '"', "‘": "'", "’": "'",
                         "‚": "'", "‛": "'", "\u00a0": " "})


def normalize_typography(text: str) -> str:
    """Tidy typography without touching wording (see the module docstring)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFC", text)
    # A broken entity (&rdquo;) leaves "”;" where a quote belongs.
    text = re.sub(r"[“”];", '"', text)
    text = text.translate(_QUOTES)
    # The"Parker Pinch" -> The "Parker Pinch": an opening quote glued to a word.
    text = re.sub(r'(?<=[A-Za-z])"(?=[A-Za-z][^"\n]*")', ' "', text)
    # Drop control characters other than newline and tab.
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def _decode(data: bytes, path: Path) -> str:
    if b"\x00" in data[:8192]:
        raise InvalidDocumentError(f"{path}: binary data (NUL bytes), not text")
    for encoding in ("utf-8-sig", "utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig",):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        raise InvalidDocumentError(f"{path}: not UTF-8 or Windows-1252 text") from None
    # cp1252 decodes most bytes: reject it when the result is mostly junk.
    printable = sum(ch.isprintable() or ch in "\n\t" for ch in text)
    if printable < 0.95 * max(len(text), 1):
        raise InvalidDocumentError(f"{path}: not readable text (unknown encoding or binary)")
    return text


def _first_line_title(text: str, fallback: str) -> tuple[str, str]:
    """Title from a short first line followed by a blank line; else the file name."""
    lines = text.split("\n", 2)
    if len(lines) >= 2 and 0 < len(lines[0].strip()) <= 120 and lines[1].strip() == "":
        return lines[0].strip().lstrip("#").strip(), text
    return fallback, text


def _title_from_name(path: Path) -> str:
    return re.sub(r"[-_]+", " ", path.stem).strip().capitalize() or path.name


def _load_txt(path: Path, data: bytes) -> list[tuple[str, str, dict]]:
    text = normalize_typography(_decode(data, path))
    title, text = _first_line_title(text, _title_from_name(path))
    return [(title, text, {})]


def _load_md(path: Path, data: bytes) -> list[tuple[str, str, dict]]:
    import frontmatter

    raw = _decode(data, path)
    try:
        post = frontmatter.loads(raw)
        meta, body = dict(post.metadata), post.content
    except Exception as exc:  # malformed YAML front matter
        raise InvalidDocumentError(f"{path}: front matter is not valid YAML ({type(exc).__name__})") from None
    text = normalize_typography(body)
    title = str(meta.get("title") or "").strip()
    if not title:
        heading = re.match(r"\s*#\s+(.+)", text)
        title = heading.group(1).strip() if heading else _title_from_name(path)
    meta = {k: v if isinstance(v, (str, int, float, bool)) else str(v) for k, v in meta.items()}
    return [(title, text, meta)]


def _load_html(path: Path, data: bytes) -> list[tuple[str, str, dict]]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(list(_HTML_DROP)):
        tag.decompose()
    for tag in soup.find_all(attrs={"role": ["navigation", "banner", "contentinfo"]}):
        tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    blocks = []
    for el in root.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "blockquote", "pre", "td", "dt", "dd"]):
        if el.find_parent(["p", "li", "blockquote", "td", "dd"]) is not None and el.name not in ("li",):
            continue  # nested block: its parent already carries the text
        piece = " ".join(el.get_text().split())
        if piece:
            blocks.append(piece)
    if not blocks:  # no block markup: fall back to all visible text
        blocks = [" ".join(root.get_text(" ", strip=True).split())]
    text = normalize_typography("\n\n".join(b for b in blocks if b))
    if not title:
        h1 = soup.find("h1")
        title = h1.get_text(" ", strip=True) if h1 else _title_from_name(path)
    return [(normalize_typography(title), text, {})]


def _load_pdf(path: Path, data: bytes) -> list[tuple[str, str, dict]]:
    import io
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    if not data.startswith(b"%PDF"):
        raise InvalidDocumentError(f"{path}: not a PDF (no %PDF header)")
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise InvalidDocumentError(f"{path}: the PDF is encrypted")
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except InvalidDocumentError:
        raise
    except (PdfReadError, Exception) as exc:  # pypdf raises many kinds on corrupt files
        raise InvalidDocumentError(f"{path}: corrupt PDF ({type(exc).__name__})") from None
    text = normalize_typography("\n\n".join(p.strip() for p in pages if p.strip()))
    title = str(meta_title).strip()
    if not title:
        title, text = _first_line_title(text, _title_from_name(path))
    return [(title, text, {"pages": len(pages)})]


def _load_jsonl(path: Path, data: bytes) -> Iterator[tuple[str, str, dict] | Skipped]:
    raw = _decode(data, path)
    seen: set[str] = set()
    for lineno, line in enumerate(raw.split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Skipped(where, f"not valid JSON ({exc.msg})")
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            yield Skipped(where, 'needs an object with a "text" string')
            continue
        rec_id = str(obj.get("_id", obj.get("id", lineno)))
        if rec_id in seen:
            yield Skipped(where, f"duplicate id {rec_id!r}")
            continue
        seen.add(rec_id)
        text = normalize_typography(obj["text"])
        title = normalize_typography(str(obj.get("title") or "")) or f"{path.stem} {rec_id}"
        meta = {k: v for k, v in obj.items() if k not in ("text", "title") and isinstance(v, (str, int, float, bool))}
        meta["record_id"] = rec_id
        yield (title, text, meta)


_LOADERS = {".txt": _load_txt, ".md": _load_md, ".markdown": _load_md, ".html": _load_html,
            ".htm": _load_html, ".pdf": _load_pdf}


def load_file(path: Path, root: Path | None = None) -> tuple[list[Document], list[Skipped]]:
    """Load one corpus file into documents; problems become ``Skipped`` rows.

    Args:
        path: the file.
        root: the corpus root; ``source`` is the path relative to it.
    """
    source = _relative(path, root)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        return [], [Skipped(source, f"unsupported file type {suffix or '(none)'}; "
                                    f"supported: {', '.join(SUPPORTED_SUFFIXES)}")]
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return [], [Skipped(source, f"file is {size // 2**20} MB, over the {MAX_FILE_BYTES // 2**20} MB limit")]
        data = path.read_bytes()
    except OSError as exc:
        return [], [Skipped(source, f"cannot read file ({exc.strerror or exc})")]
    if not data.strip():
        return [], [Skipped(source, "file is empty")]

    docs: list[Document] = []
    skipped: list[Skipped] = []
    try:
        if suffix == ".jsonl":
            for item in _load_jsonl(path, data):
                if isinstance(item, Skipped):
                    skipped.append(Skipped(_relative(Path(item.path.rsplit(":", 1)[0]), root)
                                           + ":" + item.path.rsplit(":", 1)[1], item.reason))
                    continue
                title, text, meta = item
                rec_source = f"{source}#{meta['record_id']}"
                if text:
                    docs.append(Document(make_doc_id(rec_source), title, rec_source, text,
                                         content_hash(text), meta))
                else:
                    skipped.append(Skipped(rec_source, "record has no text"))
        else:
            for title, text, meta in _LOADERS[suffix](path, data):
                if not text.strip():
                    raise InvalidDocumentError(f"{path}: no readable text")
                meta_source = str(meta.pop("source", "") or "") if isinstance(meta, dict) else ""
                if meta_source:
                    meta["original_source"] = meta_source
                docs.append(Document(make_doc_id(source), title, source, text, content_hash(text), meta))
    except InvalidDocumentError as exc:
        reason = str(exc).split(": ", 1)[-1]
        return [], [Skipped(source, reason)]
    return docs, skipped


def iter_corpus_files(paths: Iterable[Path]) -> Iterator[tuple[Path, Path]]:
    """(file, root) for every file under the given files/directories, sorted.

    Hidden files and folders (``.git``, ``.DS_Store``) are passed over.
    """
    for given in paths:
        given = Path(given)
        if given.is_dir():
            for path in sorted(given.rglob("*")):
                rel = path.relative_to(given)
                if path.is_file() and not any(part.startswith(".") for part in rel.parts):
                    yield path, given
        elif given.exists():
            yield given, given.parent
        else:
            raise InvalidDocumentError(f"{given}: no such file or directory")


def load_corpus(paths: Iterable[Path | str], strict: bool = False) -> Corpus:
    """Load every supported file under ``paths``.

    Args:
        paths: corpus directories and/or files.
        strict: raise :class:`InvalidDocumentError` on the first unreadable
            file instead of skipping it (default False).

    Raises:
        InvalidDocumentError: a path does not exist; or, with ``strict``, a
            file could not be read. Also when two files give the same id.
    """
    docs: list[Document] = []
    skipped: list[Skipped] = []
    for path, root in iter_corpus_files([Path(p) for p in paths]):
        got, bad = load_file(path, root)
        if bad and strict:
            raise InvalidDocumentError(f"{bad[0].path}: {bad[0].reason} (--strict)")
        docs.extend(got)
        skipped.extend(bad)
    ids: dict[str, str] = {}
    for doc in docs:
        if doc.doc_id in ids:
            raise InvalidDocumentError(f"{doc.source}: same id as {ids[doc.doc_id]}; rename one of them")
        ids[doc.doc_id] = doc.source
    return Corpus(tuple(docs), tuple(skipped))


def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return path.as_posix()
