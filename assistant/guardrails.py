"""Decide, before and after retrieval, whether a turn may be answered.

Two checks, both driven by rules in ``assistant/data/*.yaml`` that a
clinician can read and edit without touching code:

* :func:`pre_retrieval_check` (before retrieval): emergencies are escalated
  first (``red_flags.yaml``), then prompt injections and requests only a
  clinician can meet are refused (``refusals.yaml``). A message that is both
  an emergency and a jailbreak is escalated.
* :func:`post_retrieval_decision` (after retrieval): the question is out of
  scope, on topic but not covered by the collection (no evidence), or
  answerable (``scope.yaml``).

Each rule matches in two ways. Its regular expressions run over a
normalised, spelling-corrected copy of the message (so "cant put wieght on
it" matches). Its example paraphrases are embedded once per embedder and the
message, and each of its sentences, is compared with them: a message is
flagged when its nearest example is above a calibrated cosine threshold *and*
clearly nearer than any ordinary question listed as a contrast set, which is
what keeps "my knee pops on stairs" from being escalated.

Scope and evidence follow the collection rather than a list of topics: a
question is in scope when it is close to the configured topic and knee
anchor phrases, or close to an indexed passage (so new content brings its
questions into scope); it is answerable when its best passage is similar
enough and the passages contain its technical terms.
"""

from __future__ import annotations

import re
import threading
import unicodedata
import weakref
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .schema import Decision, Hit, Turn

DATA_DIR = Path(__file__).with_name("data")

#: The closing line every answer and no-evidence reply carries.
FOLLOW_UP = ("This is general information, not a diagnosis: please follow up with a "
             "physiotherapist or doctor about your own knee.")

URGENT_LINE = ("Please seek urgent medical care now: call your local emergency number "
               "or go to the nearest emergency department.")


# --------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class GuardResult:
    """A guardrail's verdict.

    Attributes:
        decision: one of :class:`~assistant.schema.Decision`.
        reason: short machine-readable why, e.g. ``"red_flag:locked_knee"``,
            ``"refuse:medication"``, ``"no_evidence:dense=0.41"``.
        message_text: the reply shown to the user for non-answer decisions
            (empty for ``answer``: the composer writes that reply).
        scores: the figures the decision rested on, for logs and reports.
    """

    decision: Decision
    reason: str
    message_text: str = ""
    scores: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RuleMatch:
    """Which rule matched a message, and how (``pattern``, ``context``, ``semantic``)."""

    rule_id: str
    how: str
    score: float | None = None
    text: str = ""


# --------------------------------------------------------------------------
# Rules data


@dataclass(frozen=True)
class Rule:
    """One red flag or refusal rule (see the header of ``red_flags.yaml``)."""

    id: str
    description: str
    patterns: tuple[tuple[re.Pattern, ...], ...]
    examples: tuple[str, ...] = ()
    why: str = ""
    reply: str = ""
    context_now: re.Pattern | None = None
    context_before: re.Pattern | None = None
    #: the rule does not apply to a message this matches ("my dog can't walk")
    unless: re.Pattern | None = None


@dataclass(frozen=True)
class RuleSet:
    """A rules file: its rules, spelling fixes, contrast set and thresholds."""

    name: str
    rules: tuple[Rule, ...]
    contrast: tuple[str, ...] = ()
    spelling: tuple[tuple[re.Pattern, str], ...] = ()
    threshold: float = 0.75
    margin: float = 0.06
    strong: float = 0.88
    history_turns: int = 3
    #: the reply to a message in a language the rules cannot read, and a line
    #: in that language to put first (red_flags.yaml ``unreadable_language``)
    unreadable_reply: str = ""
    unreadable_lines: tuple[tuple[str, str], ...] = ()
    #: signs the message says are absent ("no fever", "not hot or red"),
    #: taken out before the patterns are tried (red_flags.yaml ``denied``)
    denied: re.Pattern | None = None

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(f"no rule {rule_id!r} in {self.name}; rules are {[r.id for r in self.rules]}")


@dataclass(frozen=True)
class ScopeConfig:
    """Scope and evidence settings (``scope.yaml``)."""

    anchors: tuple[str, ...]
    off_topic: tuple[str, ...]
    topic_threshold: float = 0.45
    topic_margin: float = 0.0
    chunk_in_scope: float = 0.5
    answer_min: float = 0.45
    answer_sure: float = 0.6
    lexical_min: float = 0.3
    missing_term_max_dense: float = 0.7
    lay_answer_min: float = 0.55
    min_term_pieces: int = 3
    key_term_similarity: float = 0.62
    key_term_min_similarity: float = 0.30
    rare_term_max_share: float = 0.25
    off_topic_clear: float = 0.55
    top_passages: int = 5
    generic_terms: tuple[str, ...] = ()
    other_body_parts: tuple[str, ...] = ()
    knee_region_terms: tuple[str, ...] = ()
    #: (name, asks, needs, end point (asks, needs) or None): scope.yaml ``answer_types``
    answer_types: tuple[tuple[str, re.Pattern, re.Pattern, tuple[re.Pattern, re.Pattern] | None], ...] = ()
    not_alternatives: tuple[str, ...] = ()
    knee_idioms: tuple[str, ...] = ()
    asked_about: tuple[re.Pattern, ...] = ()
    abbreviations: tuple[tuple[re.Pattern, str], ...] = ()
    topic_switches: tuple[str, ...] = ()
    asides: tuple[re.Pattern, ...] = ()
    #: knees that are not a person's ("my dog's knee", "a luxating patella"): scope.yaml ``not_a_person``
    not_a_person: tuple[re.Pattern, ...] = ()


def _load_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"guardrail rules file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"guardrail rules file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"guardrail rules file {path} must hold a mapping, got {type(data).__name__}")
    return data


def _expand(pattern: str, vocabulary: dict[str, str], where: str) -> re.Pattern:
    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in vocabulary:
            raise ValueError(f"{where}: unknown name {{{name}}}; the vocabulary has {sorted(vocabulary)}")
        return vocabulary[name]

    text = pattern
    for _ in range(5):  # vocabulary entries may use other entries
        new = re.sub(r"\{([A-Z][A-Z_]*)\}", sub, text)
        if new == text:
            break
        text = new
    try:
        return re.compile(text)
    except re.error as exc:
        raise ValueError(f"{where}: bad regular expression {pattern!r}: {exc}") from None


def load_rules(path: Path | str) -> RuleSet:
    """Read a red-flag or refusal rules file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: bad YAML, a rule without ``id`` or patterns, a bad regex
            or an unknown ``{NAME}``.
    """
    path = Path(path)
    data = _load_yaml(path)
    vocabulary = {k: str(v) for k, v in (data.get("vocabulary") or {}).items()}
    semantic = data.get("semantic") or {}
    rules = []
    seen = set()
    for i, raw in enumerate(data.get("rules") or []):
        rid = raw.get("id") if isinstance(raw, dict) else None
        if not rid:
            raise ValueError(f"{path}: rule number {i + 1} has no id")
        if rid in seen:
            raise ValueError(f"{path}: rule id {rid!r} appears twice")
        seen.add(rid)
        where = f"{path.name}: rule {rid!r}"
        patterns = []
        for item in raw.get("patterns") or []:
            if isinstance(item, dict):
                parts = item.get("all")
                if not parts:
                    raise ValueError(f"{where}: a pattern mapping needs the key 'all', got {sorted(item)}")
                patterns.append(tuple(_expand(p, vocabulary, where) for p in parts))
            else:
                patterns.append((_expand(str(item), vocabulary, where),))
        examples = tuple(str(e) for e in raw.get("examples") or ())
        if not patterns and not examples:
            raise ValueError(f"{where} has neither patterns nor examples")
        ctx = raw.get("with_context") or {}
        if ctx and not (ctx.get("now") and ctx.get("before")):
            raise ValueError(f"{where}: with_context needs both 'now' and 'before'")
        rules.append(Rule(
            id=str(rid),
            description=str(raw.get("description", "")).strip(),
            patterns=tuple(patterns),
            examples=examples,
            why=str(raw.get("why", "")).strip(),
            reply=" ".join(str(raw.get("reply", "")).split()),
            context_now=_expand(ctx["now"], vocabulary, where) if ctx else None,
            context_before=_expand(ctx["before"], vocabulary, where) if ctx else None,
            unless=_expand(str(raw["unless"]), vocabulary, where) if raw.get("unless") else None,
        ))
    contrast = tuple(str(x) for x in (data.get("not_emergencies") or data.get("not_refusals") or ()))
    spelling = tuple(
        (re.compile(r"\b" + re.escape(str(wrong).lower()) + r"\b"), str(right).lower())
        for wrong, right in sorted((data.get("spelling") or {}).items(), key=lambda kv: -len(str(kv[0])))
    )
    denied_signs = [str(w) for w in (data.get("denied") or {}).get("signs", ())]
    denied = None
    if denied_signs:
        negations = data["denied"].get("negations") or ("no", "not", "without")
        if not all(isinstance(w, str) for w in negations):  # YAML reads a bare no as false
            raise ValueError(f"{path}: 'denied: negations' must be quoted strings (\"no\", not no)")
        negation = "|".join(re.escape(w) for w in sorted(negations, key=len, reverse=True))
        sign = "(?:" + "|".join(re.escape(w) for w in sorted(denied_signs, key=len, reverse=True)) + r")(?!\s*(?:of\s*)?\d)"
        extra = "".join(f"|{_expand(str(p), vocabulary, path.name + ': denied').pattern}"
                        for p in data["denied"].get("patterns") or ())
        denied = re.compile(rf"\b(?:{negation})[\s-]+(?:a |any |real |much |big |sign of |signs of )?{sign}"
                            rf"(?:\s+(?:or|nor|and)\s+(?:a |any )?{sign})*\b{extra}")
    unreadable = data.get("unreadable_language") or {}
    if not isinstance(unreadable, dict):
        raise ValueError(f"{path}: 'unreadable_language' must be a mapping with 'reply' and 'lines'")
    return RuleSet(
        name=path.name,
        rules=tuple(rules),
        contrast=contrast,
        spelling=spelling,
        threshold=float(semantic.get("threshold", 0.75)),
        margin=float(semantic.get("margin", 0.06)),
        strong=float(semantic.get("strong", 0.88)),
        history_turns=int(semantic.get("history_turns", 3)),
        unreadable_reply=str(unreadable.get("reply") or "").strip(),
        unreadable_lines=tuple((str(k), str(v)) for k, v in (unreadable.get("lines") or {}).items()),
        denied=denied,
    )


def _regex_list(data: dict, key: str, path: Path) -> list[re.Pattern]:
    """The case-insensitive regexes listed under ``key`` (a clear error for a bad one)."""
    out = []
    for i, pattern in enumerate(data.get(key) or ()):
        try:
            out.append(re.compile(str(pattern), re.I))
        except re.error as exc:
            raise ValueError(f"{path}: {key} entry {i + 1} is not a valid regex ({exc})") from None
    return out


def load_scope(path: Path | str) -> ScopeConfig:
    """Read ``scope.yaml`` (anchor phrases and the calibrated thresholds)."""
    path = Path(path)
    data = _load_yaml(path)
    th = data.get("thresholds") or {}
    anchors = tuple(str(a) for a in data.get("anchors") or ())
    if not anchors:
        raise ValueError(f"{path}: 'anchors' must list at least one on-topic phrase")
    lists = ("generic_terms", "other_body_parts", "knee_region_terms", "not_alternatives", "knee_idioms",
             "topic_switches")
    known = {f.name for f in ScopeConfig.__dataclass_fields__.values()} - {"anchors", "off_topic", "answer_types", "asides",
                                                                          "not_a_person", *lists}
    unknown = set(th) - known
    if unknown:
        raise ValueError(f"{path}: unknown thresholds {sorted(unknown)}; valid ones are {sorted(known)}")
    answer_types = []
    for i, entry in enumerate(data.get("answer_types") or ()):
        try:
            end = entry.get("end_point")
            answer_types.append((str(entry["name"]), re.compile(entry["asks"], re.I), re.compile(entry["needs"], re.I),
                                 (re.compile(end["asks"], re.I), re.compile(end["needs"], re.I)) if end else None))
        except (KeyError, TypeError, re.error) as exc:
            raise ValueError(f"{path}: answer_types entry {i + 1} needs name, asks and needs regexes"
                             f" (and an end_point, if given, its own asks and needs) ({exc})") from None
    asked_about = _regex_list(data, "asked_about", path)
    for i, pattern in enumerate(asked_about):
        if "x" not in pattern.groupindex:
            raise ValueError(f"{path}: asked_about entry {i + 1} needs a group named x: (?P<x>...)")
    asides = _regex_list(data, "asides", path)
    abbreviations = []
    for short, full in (data.get("abbreviations") or {}).items():
        abbreviations.append((re.compile(r"\b" + re.escape(str(short)).replace(r"\ ", r"[\s-]*") + r"\b", re.I), str(full)))
    return ScopeConfig(anchors=anchors, off_topic=tuple(str(a) for a in data.get("off_topic") or ()),
                       answer_types=tuple(answer_types), asked_about=tuple(asked_about), asides=tuple(asides),
                       not_a_person=tuple(_regex_list(data, "not_a_person", path)),
                       abbreviations=tuple(abbreviations),
                       **{name: tuple(str(w).lower() for w in data.get(name) or ()) for name in lists},
                       **{k: type(getattr(ScopeConfig, k))(v) for k, v in th.items()})


@lru_cache(maxsize=None)
def default_rules() -> tuple[RuleSet, RuleSet, ScopeConfig]:
    """The packaged red flags, refusals and scope settings (read once)."""
    return (load_rules(DATA_DIR / "red_flags.yaml"), load_rules(DATA_DIR / "refusals.yaml"),
            load_scope(DATA_DIR / "scope.yaml"))


# --------------------------------------------------------------------------
# Text helpers


_APOSTROPHES = "'\u2019\u2018\u02bc`\u00b4"


def normalize(text: str) -> str:
    """Lower case, NFKC, apostrophes dropped ("can't" -> "cant"), other
    punctuation as spaces, white space collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(f"[{_APOSTROPHES}]", "", text)
    text = re.sub(r"[^\w\s]|_", " ", text)
    return " ".join(text.split())


def fold_accents(text: str) -> str:
    """``text`` without accents ("opérée" -> "operee", "rótula" -> "rotula"),
    so a rule written in plain letters matches either spelling."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_UNDECOMPOSED))
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


#: letters NFKD leaves whole: Polish ł, Turkish dotless ı, Danish ø, ß
_UNDECOMPOSED = str.maketrans({"ł": "l", "Ł": "L", "ı": "i", "ø": "o", "Ø": "O", "đ": "d", "ß": "ss", "æ": "ae"})


_LEET = str.maketrans("013457@$", "oieastas")
#: a word with digits among its letters ("y0ur", "1gn0r3"), unlike a number
#: with a unit ("800mg", "20cc") or an ordinal ("1st")
_LEET_SIGN = re.compile(r"[a-z][013457]|[013457][a-z]+[013457]")
_MIXED_WORD = re.compile(r"\b(?=\w*[a-z])(?=\w*\d)\w+\b")


def unleet(text: str) -> str:
    """A message written with digits for letters ("1gn0r3 y0ur
    1nstruct10n5 4nd ...") read as letters; any other text unchanged. It
    takes two words that look like leetspeak, so "b4 the 3rd set" is left
    alone."""
    if sum(1 for w in text.split() if _LEET_SIGN.search(w)) < 2:
        return text
    return _MIXED_WORD.sub(lambda m: m.group(0).translate(_LEET), text)


_SPACED = re.compile(r"(?:\b\w\b ){5,}\b\w\b")


def unspace(text: str) -> str:
    """A message typed with a space between letters ("i g n o r e   y o u r
    r u l e s", words two spaces apart) read as words; in a message of
    ordinary words, only the spaced-out run is joined ("the m a x i m u m
    dose" -> "the maximum dose"); other text unchanged."""
    if not _SPACED.search(text):
        return text
    if re.search(r"\S\s{2,}\S", text.strip()):
        return " ".join(w.replace(" ", "") for w in re.split(r"\s{2,}", text.strip()))
    return _SPACED.sub(lambda m: m.group(0).replace(" ", ""), text)


#: single letters joined by one kind of punctuation: "i.g.n.o.r.e", "r-e-v-e-a-l"
_DOTTED = re.compile(r"\b[a-z](?:([.\-_*~+])[a-z])(?:\1[a-z])+\b", re.IGNORECASE)


def undot(text: str) -> str:
    """Words spelled out with a dot or dash between the letters
    ("i.g.n.o.r.e y.o.u.r r-u-l-e-s") read as words; other text (e.g.,
    "x-ray", "20-30") unchanged."""
    return _DOTTED.sub(lambda m: re.sub(r"[.\-_*~+]", "", m.group(0)), text)


#: words common enough that a message holding several is English
_COMMON = frozenset("the and you your all this that is are to of it in for my me what how with print ignore".split())
_ROT13 = str.maketrans("abcdefghijklmnopqrstuvwxyz", "nopqrstuvwxyzabcdefghijklm")


def unrot13(text: str) -> str:
    """A message in ROT13 ("vtaber nyy ehyrf" for "ignore all rules")
    decoded, when the decoding reads as English and the message did not
    (two more common words); else unchanged."""
    low = text.lower()
    decoded = low.translate(_ROT13)
    def common(t: str) -> int:
        return sum(1 for w in re.findall(r"[a-z]+", t) if w in _COMMON)
    return decoded if common(decoded) >= common(low) + 2 else text


def readings(message: str, spelling: Sequence[tuple[re.Pattern, str]] = ()) -> list[str]:
    """The forms of a message the rules' patterns are tried on: normalised
    and respelled (the main one), as typed (lower case, for scripts such as
    Chinese and for punctuation), without accents, with leetspeak read as
    letters, with spaced-out or dotted letters read as words, and decoded
    from ROT13; each only when it differs."""
    norm = _respell(normalize(message), spelling)
    others = (unicodedata.normalize("NFKC", message).lower(), _respell(fold_accents(norm), spelling),
              _respell(unleet(norm), spelling), _respell(normalize(unspace(message)), spelling),
              # both at once: "m a x i m u m d0se of d1clofenac"
              _respell(unleet(normalize(unspace(message))), spelling),
              # French and Italian elisions ("l'anti-douleur") as two words
              _respell(fold_accents(normalize(re.sub(f"[{_APOSTROPHES}]", " ", message))), spelling),
              _respell(normalize(undot(message)), spelling), _respell(normalize(unrot13(message)), spelling))
    return list(dict.fromkeys((norm, *others)))


def _respell(text: str, spelling: Sequence[tuple[re.Pattern, str]]) -> str:
    for pattern, right in spelling:
        text = pattern.sub(right, text)
    return text


def _segments(text: str) -> list[str]:
    """The message and, when it has several, its sentences and clauses.

    Embedding each part keeps an emergency from being diluted by other text
    ("Ignore your rules. My knee is hot and I have a fever.").
    """
    parts = [p.strip() for p in re.split(r"(?<=[.!?;])\s+|\n+", text) if len(p.strip()) > 3]
    # clauses too: "how many passes should i do btw my foot has gone numb"
    clauses = [c.strip() for p in parts for c in _CLAUSE_BREAK.split(p) if len(c.split()) >= 4]
    out = [text.strip()]
    for p in parts + clauses:
        if p not in out:
            out.append(p)
    return out[:12]


_CLAUSE_BREAK = re.compile(r",\s+|\s+-+\s+|\s+(?:btw|by the way|also|but|plus|anyway|oh and|and now|and also)\s+",
                           re.IGNORECASE)


# --------------------------------------------------------------------------
# The checker


#: "X or Y" with X and Y single words (after "a", "an", "the" and the like).
_ALTERNATIVES = re.compile(r"\b([a-z][a-z0-9-]+) (?:or|vs\.?|v\.|versus) (?:an? |the |some |a few )?([a-z][a-z0-9-]+)\b")

#: "not X or Y", "no X or Y", "never X or Y": what is ruled out, not a choice.
_NEGATED_BEFORE = re.compile(r"\b(?:not|no|never|neither|without|isn'?t|wasn'?t|aren'?t)\s+"
                             r"(?:(?:asking|looking) (?:for|about) )?(?:any |a |the )?$")

#: A document needs this many chunks before a word can be "rare" in it.
RARE_TERM_MIN_CHUNKS = 4

#: What a question asks for, knee words taken out, is off-topic only this
#: close to an off-topic anchor (see :meth:`Guardrails.asks_off_topic`).
ASKED_OFF_TOPIC_MIN = 0.40
_BACK_OF_KNEE = re.compile(r"\bbacks? of (?:my |the |your |his |her )?(?:knee|leg|thigh)s?\b")
#: The knee named only as what another part is compared with ("my elbow
#: clicks, is that the same tracking thing as the kneecap?"): the question is
#: about the other part.
_KNEE_COMPARED = re.compile(r"\b(?:(?:same|similar) (?:\w+ ){0,4}(?:as|to)|like) (?:with )?(?:the |my |your |a |his |her )?"
                            r"(?:knee ?caps?|knees?|patellas?)\b")


class Guardrails:
    """Rules plus the embedder, with the example vectors cached.

    Args:
        embedder: anything with ``encode(texts) -> unit vectors``.
        red_flags, refusals, scope: rule sets (default: the packaged files).
    """

    def __init__(self, embedder, red_flags: RuleSet | None = None, refusals: RuleSet | None = None,
                 scope: ScopeConfig | None = None):
        d_red, d_ref, d_scope = default_rules()
        self.embedder = embedder
        self.red_flags = red_flags or d_red
        self.refusals = refusals or d_ref
        self.scope = scope or d_scope
        self._vectors: dict[str, tuple[np.ndarray, list[str]]] = {}
        self._lock = threading.Lock()
        self._pieces_cache: dict[str, int] = {}
        self._last_segments: tuple[str, np.ndarray] | None = None
        self._known: frozenset[str] | None = None

    @property
    def known_words(self) -> frozenset[str]:
        """Whole words of the embedding model's vocabulary ("rowing",
        "kneeling"): real words, so never taken for a misspelling of a
        passage's word ("growing", "feeling"). Empty without a tokenizer."""
        if self._known is None:
            from .retrieval import model_words

            self._known = model_words(self.embedder)
        return self._known

    # -- cached example vectors

    #: Where example vectors are kept between runs (set by the Assistant to a
    #: folder of the index); None keeps them in memory only.
    cache_dir: Path | None = None

    def _bank(self, key: str, texts: Sequence[str], labels: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        bank = self._vectors.get(key)
        if bank is None:
            with self._lock:
                bank = self._vectors.get(key)
                if bank is None:
                    vecs = self._cached_encode(list(texts)) if texts else np.zeros((0, 1), np.float32)
                    bank = (np.asarray(vecs, dtype=np.float32), list(labels))
                    self._vectors[key] = bank
        return bank

    def _cached_encode(self, texts: list[str]) -> np.ndarray:
        """Encode, reusing vectors saved by an earlier run for the same model
        and the same texts (so a restart does not re-embed every example)."""
        from .embedding import cached_encode

        return cached_encode(self.embedder, texts, self.cache_dir, "guard")

    def _examples(self, rules: RuleSet) -> tuple[np.ndarray, list[str]]:
        texts, labels = [], []
        for r in rules.rules:
            texts.extend(r.examples)
            labels.extend([r.id] * len(r.examples))
        return self._bank(rules.name + ":examples", texts, labels)

    def _contrast(self, rules: RuleSet) -> np.ndarray:
        return self._bank(rules.name + ":contrast", rules.contrast, rules.contrast)[0]

    # -- rule matching

    def semantic_scores(self, message: str, rules: RuleSet) -> tuple[str | None, float, float, str]:
        """(best rule id, its cosine, best contrast cosine, segment) over the
        message's segments, taking the segment with the largest lead of
        rule-example similarity over contrast similarity."""
        ex_vecs, labels = self._examples(rules)
        if not len(labels):
            return None, 0.0, 0.0, ""
        segs = _segments(message)
        q = self._encode_segments(message, segs)
        sim = q @ ex_vecs.T
        con = self._contrast(rules)
        con_best = (q @ con.T).max(axis=1) if len(con) else np.zeros(len(segs))
        # the segment that flags (if any), then the one most similar to a rule
        leads = [(self._flags(float(sim[i].max()), float(con_best[i]), rules), float(sim[i].max()), i)
                 for i in range(len(segs))]
        leads.sort(reverse=True)
        best_i = leads[0][2]
        j = int(np.argmax(sim[best_i]))
        return labels[j], float(sim[best_i, j]), float(con_best[best_i]), segs[best_i]

    def _encode_segments(self, message: str, segs: list[str]) -> np.ndarray:
        # both rule sets look at the same message: embed it once
        last = self._last_segments
        if last is not None and last[0] == message:
            return last[1]
        q = self.embedder.encode(segs)
        self._last_segments = (message, q)
        return q

    @staticmethod
    def _flags(score: float, contrast: float, rules: RuleSet) -> bool:
        return score >= rules.strong or (score >= rules.threshold and score - contrast >= rules.margin)

    def match(self, message: str, rules: RuleSet, history: Sequence[Turn] = (),
              semantic: bool = True) -> RuleMatch | None:
        """The first rule of ``rules`` that matches ``message``, or None."""
        texts = readings(message, rules.spelling)
        if rules.denied is not None:  # "no fever, not hot or red": signs said to be absent
            texts = [rules.denied.sub(" ", t) for t in texts]
        norm = texts[0]
        excluded = {r.id for r in rules.rules if r.unless is not None and any(r.unless.search(t) for t in texts)}
        for rule in rules.rules:
            if rule.id in excluded:
                continue
            for group in rule.patterns:
                if all(any(p.search(t) for t in texts) for p in group):
                    return RuleMatch(rule.id, "pattern", None, message)
        earlier = [t.content for t in history if getattr(t, "role", "") == "user"][-rules.history_turns:]
        if earlier:
            before = [_respell(normalize(t), rules.spelling) for t in earlier]
            for rule in rules.rules:
                if rule.id in excluded:
                    continue
                if rule.context_now is not None and rule.context_now.search(norm) and any(
                        rule.context_before.search(b) for b in before):
                    return RuleMatch(rule.id, "context", None, message)
        if semantic:
            said = message if rules.denied is None else rules.denied.sub(" ", message.lower())
            rid, score, contrast, seg = self.semantic_scores(said, rules)
            if rid is not None and rid not in excluded and self._flags(score, contrast, rules):
                return RuleMatch(rid, "semantic", round(score, 4), seg)
        return None

    # -- the two checks

    def pre_retrieval(self, message: str, history: Sequence[Turn] = (),
                      topic: str | None = None) -> GuardResult | None:
        """Escalate an emergency, else refuse an unsafe request, else None."""
        hit = self.match(message, self.red_flags, history)
        if hit is None and _leans_on_earlier_turn(message):
            # "is that normal?" after "my calf has gone tight and swollen since
            # the op": the emergency is in the turn this one asks about. Only
            # the rules' patterns read that turn: by meaning alone, a past
            # injury told as background ("I slipped on ice last year, all
            # healed now") comes too close to the examples.
            users = [t for t in history if getattr(t, "role", "") == "user" and t.content.strip()]
            if users:
                earlier = self.match(users[-1].content, self.red_flags, users[:-1], semantic=False)
                if earlier is not None:
                    hit = RuleMatch(earlier.rule_id, "earlier_turn", earlier.score, earlier.text)
        if hit is not None:
            rule = self.red_flags.rule(hit.rule_id)
            return GuardResult(Decision.ESCALATE, f"red_flag:{rule.id}:{hit.how}",
                               escalation_text(rule), {"score": hit.score})
        hit = self.match(message, self.refusals)
        if hit is not None:
            rule = self.refusals.rule(hit.rule_id)
            return GuardResult(Decision.REFUSE, f"refuse:{rule.id}:{hit.how}",
                               refusal_text(rule, topic), {"score": hit.score})
        if self.red_flags.unreadable_reply:
            from .language import foreign_language

            lang = foreign_language(message)
            if lang is not None:
                # It may describe an emergency no rule understood: say how
                # to get urgent care, in that language where we can.
                own = dict(self.red_flags.unreadable_lines).get(lang)
                text = f"{own}\n\n{self.red_flags.unreadable_reply}" if own else self.red_flags.unreadable_reply
                return GuardResult(Decision.ESCALATE, f"escalate:unreadable_language:{lang}", text, {})
        return None

    def topic_scores(self, query: str, topic: str) -> tuple[float, float]:
        """(max cosine to the topic and anchors, max cosine to off-topic anchors)."""
        on, _ = self._bank("scope:on:" + topic, (topic,) + self.scope.anchors, ())
        off, _ = self._bank("scope:off", self.scope.off_topic, ())
        q = self.embedder.encode([query])[0]
        return float((on @ q).max()), float((off @ q).max()) if len(off) else 0.0

    def in_scope(self, query: str, best_chunk_score: float | None, topic: str,
                 coverage: float = 0.0, n_terms: int = 0) -> tuple[bool, dict]:
        """Is ``query`` about this collection's subject? (and the figures)

        In scope when the best passage is close (``chunk_in_scope``), or the
        question is near the topic and anchor phrases and nearer to them
        than to the off-topic ones, or the passages contain every content
        word of a question of two or more such words ("what is the Q angle").
        """
        on, off = self.topic_scores(query, topic)
        dense = -1.0 if best_chunk_score is None else float(best_chunk_score)
        s = self.scope
        ok = (dense >= s.chunk_in_scope
              or (on >= s.topic_threshold and on - off >= s.topic_margin)
              or (n_terms >= 2 and coverage >= 1.0 and dense >= s.lexical_min))
        return ok, {"topic": round(on, 4), "off_topic": round(off, 4), "dense": round(dense, 4)}

    def asks_off_topic(self, question: str, topic: str) -> bool:
        """Is what the question asks for off-topic once the knee is taken out
        of it? ("how do you make a Bee's Knees cocktail", "running songs for
        my bad knee"): nearer an off-topic anchor than the topic by
        ``topic_margin``, and at least :data:`ASKED_OFF_TOPIC_MIN` close to it."""
        region = set(self.scope.knee_region_terms)
        if _knee_symptom(question, region):
            return False  # "why do my knees ache when it turns cold" asks about the knee
        asked = _BACK_OF_KNEE.sub(" ", question.lower())  # "the back of my knee" is no back pain
        rest = " ".join(w for w in re.findall(r"[\w']+", asked) if w not in region)
        if not rest.strip():
            return False
        on, off = self.topic_scores(rest, topic)
        return off >= ASKED_OFF_TOPIC_MIN and off - on >= self.scope.topic_margin

    def spell_out(self, text: str) -> str:
        """``text`` with the abbreviations of scope.yaml written in full ("IT
        band" -> "iliotibial band"), so the words checked against the
        passages are the ones a passage on the subject would use."""
        for pattern, full in self.scope.abbreviations:
            text = pattern.sub(full, text)
        return text

    def abbreviated_terms(self, text: str) -> list[str]:
        """The words of the full forms of the abbreviations in ``text``: named
        things, so each is a key term ("iliotibial", which the model alone
        does not place near the knee)."""
        return [w for pattern, full in self.scope.abbreviations if pattern.search(text)
                for w in content_words(full) if w not in self.scope.generic_terms]

    def not_about_the_knee(self, question: str, topic: str, dense: float | None = None) -> str | None:
        """Why a question that names the knee is not about it, or None: every
        knee word is in an idiom ("the bee's knees", "a knee wall", "the knee
        of the curve"), the knee is an animal's ("my dog's luxating patella":
        scope.yaml ``not_a_person``), or the question says it changes the
        subject ("different question, ...") and what follows is off the
        topic. A change of subject whose passages answer it well (``dense`` at
        least ``answer_min``: "ok kinda unrelated, is kicking a football good
        for it?") stays."""
        text = " " + normalize(question) + " "
        if any(p.search(text) for p in self.scope.not_a_person):
            return "not_a_person"
        region = set(self.scope.knee_region_terms)
        idioms = [normalize(i) for i in self.scope.knee_idioms]
        stripped = text
        for idiom in idioms:
            stripped = stripped.replace(" " + idiom + " ", " ")
        if stripped != text and not region & set(stripped.split()):
            on, _ = self.topic_scores(stripped.strip(), topic)
            if on < self.scope.topic_threshold:
                return "idiom"
        for rest in self.after_topic_switches(question):
            if len(rest.split()) >= 3 and (dense is None or dense < self.scope.answer_min):
                on, off = self.topic_scores(rest, topic)
                if on < self.scope.topic_threshold and off >= on:
                    return "changed_subject"
        return None

    def after_topic_switches(self, question: str) -> list[str]:
        """What follows each phrase of ``topic_switches`` (scope.yaml) the
        question holds, normalised: "ok different thing, what about taping"
        -> ["what about taping"]. In the order of the list."""
        text = " " + normalize(question) + " "
        out = []
        for switch in (normalize(t) for t in self.scope.topic_switches):
            at = text.find(" " + switch + " ")
            if at >= 0:
                out.append(text[at + len(switch) + 2:].strip())
        return out

    def _pieces(self, words: Sequence[str]) -> dict[str, int]:
        todo = [w for w in words if w not in self._pieces_cache]
        if todo:
            try:
                counts = self.embedder.count_tokens(todo)
                stems = self.embedder.count_tokens([_stem(w) for w in todo])
            except Exception:  # an embedder without a tokenizer: nothing is rare
                counts = stems = [1] * len(todo)
            for w, n, m in zip(todo, counts, stems):
                self._pieces_cache[w] = min(n, m)
        return {w: self._pieces_cache[w] for w in words}

    def key_terms(self, words: Sequence[str], topic: str) -> list[str]:
        """The words of ``words`` a passage must contain to answer the question.

        A word is key when it is close to the topic anchors on its own (a
        medical word such as "ligament" or "arthritis"), or when it is at
        least loosely related to them (``key_term_min_similarity``) and the
        model's tokenizer splits it into many pieces (a technical or rare
        term: "glucosamine" = g+lu+cos+amine; short acronyms such as "acl" =
        ac+l). The relation check keeps typos and slang ("shud", "lol")
        from counting as terms the collection lacks; ``generic_terms``
        (scope.yaml) never count.
        """
        s = self.scope
        words = [w for w in dict.fromkeys(words) if w not in s.generic_terms]
        if not words:
            return []
        pieces = self._pieces(words)
        on, _ = self._bank("scope:on:" + topic, (topic,) + s.anchors, ())
        sims = (self.embedder.encode(words) @ on.T).max(axis=1)
        return [w for w, sim in zip(words, sims)
                if sim >= s.key_term_similarity
                or (sim >= s.key_term_min_similarity
                    and (pieces[w] >= s.min_term_pieces or (pieces[w] == 2 and len(w) <= 5)))]

    def other_body_part(self, words: Sequence[str], index=None) -> str | None:
        """A body part the question names that the collection never mentions
        ("neck", "wrist"), when the question names no part of the knee
        region either; else None. Once editors add content on that part,
        its word is in the collection and the rule no longer applies."""
        s = self.scope
        if any(w in s.knee_region_terms for w in words):
            return None
        named = [w for w in words if w in s.other_body_parts]
        if not named:
            return None
        share = index.chunk_share(named) if index is not None and hasattr(index, "chunk_share") else {}
        unknown = [w for w in named if share.get(w, 0.0) == 0.0]
        return unknown[0] if unknown else None

    def shared_rare_terms(self, words: Sequence[str], hits: Sequence[Hit], index) -> list[str]:
        """Two or more of the question's words that are rare in a retrieved
        passage's document (in at most ``rare_term_max_share`` of its chunks)
        and found together in that passage, e.g. "tape" and "skin"; else [].

        Rarity is judged within the passage's own document, so unrelated
        documents in the index do not make every word rare; a document of
        fewer than :data:`RARE_TERM_MIN_CHUNKS` chunks has no rare words.
        """
        if index is None or not hasattr(index, "rows_of_document"):
            return []
        words = [w for w in words if len(w) >= 3 and w not in self.scope.generic_terms]
        if len(words) < 2:
            return []
        best: list[str] = []
        rare_in: dict[str, list[str]] = {}  # per document: the question's words rare in it
        for hit in hits:
            doc = hit.chunk.doc_id
            if doc not in rare_in:
                rows = index.rows_of_document(doc)
                share = index.chunk_share(words, rows) if len(rows) >= RARE_TERM_MIN_CHUNKS else {}
                rare_in[doc] = [w for w in words if 0 < share.get(w, 0.0) <= self.scope.rare_term_max_share]
            rare = rare_in[doc]
            text = normalize(hit.chunk.title + " " + hit.chunk.text)
            found = [w for w in rare if _term_in(w, text) or _lay_term_in(w, text)]
            if len(found) > len(best):
                best = found
        return best if len(best) >= 2 else []

    def missing_answer_type(self, question: str, hits: Sequence[Hit]) -> str | None:
        """The kind of answer the question asks for ("duration": "how many
        weeks until...") when none of the passages holds one; else None."""
        passages = " ".join(h.chunk.text for h in list(hits)[: self.scope.top_passages])
        for name, asks, needs, end in self.scope.answer_types:
            if asks.search(question) and not needs.search(passages) and not (
                    end and end[0].search(question) and _on_subject(end[1], question, passages)):
                return name
        return None

    def missing_subject(self, question: str, hits: Sequence[Hit]) -> str | None:
        """What the question asks about ("is *cycling* good for the VMO",
        "the best *stretches* for...", the ``asked_about`` patterns) when
        none of its words is in the top passages, as is or by a lay term;
        else None. Judging words (good, normal, ...) and care words are not
        subjects."""
        passages = normalize(" ".join(h.chunk.text for h in list(hits)[: self.scope.top_passages]))
        skip = set(self.scope.not_alternatives) | set(self.scope.generic_terms) | set(self.scope.knee_region_terms)
        text = normalize(question)
        for pattern in self.scope.asked_about:
            for m in pattern.finditer(text):
                words = [w for w in content_words(m.group("x")) if w not in skip]
                if words and not any(_term_in(w, passages) or _lay_term_in(w, passages)
                                     or _misspelt_in(w, passages, self.known_words) for w in words):
                    return " ".join(words)
        return None

    def missing_alternatives(self, question: str, hits: Sequence[Hit]) -> tuple[str, str] | None:
        """Two alternatives the question weighs ("ice or heat", "an MRI or an
        X-ray", "treadmill vs the road") when the passages mention neither;
        else None."""
        passages = normalize(" ".join(h.chunk.title + " " + h.chunk.text
                                      for h in list(hits)[: self.scope.top_passages]))
        skip = set(self.scope.not_alternatives)
        text = unicodedata.normalize("NFKC", question).lower()
        for m in _ALTERNATIVES.finditer(text):
            pair = (m.group(1), m.group(2))  # hyphens kept: "x-ray"
            if _NEGATED_BEFORE.search(text[:m.start()]):  # "not hot or red": a description, not a choice
                continue
            if any(w in skip or not content_words(w) for w in pair):
                continue
            if not any(_term_in(w, passages) or _lay_term_in(w, passages) for w in pair):
                return pair
        return None

    def _dense_in_collection_words(self, query: str, hits: Sequence[Hit], index) -> float:
        """The best cosine between the passages' sentences and ``query`` with
        its lay phrases put in the collection's words ("the inner teardrop
        muscle" -> "the inner VMO vastus medialis muscle"); -1 when it has none."""
        from .retrieval import lay_phrases

        said = lay_phrases(query)
        if not said or index is None:
            return -1.0
        text = query
        for phrase, terms in said:
            text = text.replace(phrase, terms, 1)
        qvec = self.embedder.encode_query(text)
        best = -1.0
        for hit in hits:
            row = index.row_of(hit.chunk.chunk_id)
            for _, _, vec in (index.sentences_of(row) if row is not None else []):
                best = max(best, float(vec @ qvec))
        return best

    def post_retrieval(self, query: str, hits: Sequence[Hit], topic: str, index=None,
                       question: str | None = None, on_topic: bool = False) -> GuardResult:
        """answer / no_evidence / out_of_scope for a retrieved question.

        ``index`` (optional) lets words that are rare in the collection and
        meet in one passage count as evidence the embedding may miss ("the
        tape makes my skin itchy" and "...if your skin becomes irritated").

        ``on_topic``: ``query`` is a follow-up read with earlier turns that
        were about the collection. It is then out of scope only when it says
        so itself (another body part, a question plainly about something
        else), never because its cosines to the topic are low: "my skin
        reacts to it tho" after "what's McConnell taping" is about the tape.
        """
        from .retrieval import points_back, respell

        s = self.scope
        top = list(hits)[: s.top_passages]
        dense = best_dense(query, top, self.embedder)
        as_written = dense
        if dense is not None and dense < s.answer_min:
            # Said in the collection's words ("the inner teardrop muscle" ->
            # "... VMO vastus medialis ..."), the question may be close to a
            # passage it is far from as typed. That reading must clear a
            # higher bar: putting the collection's words in raises every
            # cosine a little, covered question or not.
            in_its_words = self._dense_in_collection_words(query, top, index)
            if in_its_words >= s.lay_answer_min:
                dense = in_its_words
        passages = normalize(" ".join(h.chunk.title + " " + h.chunk.text for h in top))
        spelled = self.spell_out(query)
        words = content_words(spelled)
        # the follow-up's own words, when ``query`` also holds earlier turns
        own = content_words(self.spell_out(question)) if question is not None and question != query else []
        elsewhere = self.other_body_part(content_words(_KNEE_COMPARED.sub(" ", normalize(spelled))), index)
        if not elsewhere and own:
            # a follow-up about another part ("and my shoulder?" after a knee question)
            elsewhere = self.other_body_part(own, index)
        if elsewhere:
            return GuardResult(Decision.OUT_OF_SCOPE, f"out_of_scope:body_part={elsewhere}",
                               out_of_scope_text(topic), {"body_part": elsewhere})
        why_not = self.not_about_the_knee(query if question is None else question, topic, dense)
        if why_not:
            return GuardResult(Decision.OUT_OF_SCOPE, f"out_of_scope:{why_not}", out_of_scope_text(topic), {})
        said = _lay_phrase_words_in(spelled, passages)
        found = [w for w in words if w in said or _term_in(w, passages) or _lay_term_in(w, passages)]
        coverage = len(found) / len(words) if words else 0.0
        ok, scores = self.in_scope(query, dense, topic, coverage, len(words))
        if not ok and spelled != query:  # "is it PFPS": judged by what the letters stand for
            ok, scores = self.in_scope(spelled, dense, topic, coverage, len(words))
        scores["coverage"] = round(coverage, 3)
        if dense != as_written:
            scores["dense_as_written"] = round(as_written, 4)
        shared = self.shared_rare_terms(words, top, index)
        if shared and len(own) >= 2 and not set(shared) & set(own) and not points_back(question):
            # Only the earlier turns' rare words meet in a passage (theirs):
            # that says nothing of a follow-up with words of its own, plainly
            # about something else and not pointing back ("ok and what's the
            # capital of France" after a taping question).
            q_on, q_off = self.topic_scores(question, topic)
            if q_off > q_on:
                shared = []
        if shared and not on_topic and scores["off_topic"] >= s.off_topic_clear and scores["off_topic"] > scores["topic"]:
            # Two words that meet in a passage ("dropping" your toe, "fix")
            # say nothing when the question is plainly about something else
            # ("my wifi keeps dropping, how do I fix it").
            scores["shared_terms_off_topic"] = shared
            shared = []
        if shared:
            scores["shared_terms"] = shared
        if not ok and (shared or on_topic):
            ok = True
        if not ok and found and dense is not None and dense >= s.lexical_min:
            # A specific term of the question ("McConnell", "adductor") is in
            # the passages: the collection speaks of it, so it is in scope.
            found_keys = [w for w in self.key_terms(found, topic) if len(w) >= 3]
            if found_keys:
                ok = True
                scores["found_terms"] = found_keys
        if not ok:
            return GuardResult(Decision.OUT_OF_SCOPE, "out_of_scope", out_of_scope_text(topic), scores)
        asked = respell(query if question is None else question)  # "hamstrings or the quods"
        kind = self.missing_answer_type(asked, top)
        if kind is not None:
            scores["answer_type"] = kind
            return GuardResult(Decision.NO_EVIDENCE, f"no_evidence:answer_type={kind}",
                               no_evidence_text(topic), scores)
        subject = self.missing_subject(asked, top)
        if subject is not None:
            scores["subject"] = subject
            return GuardResult(Decision.NO_EVIDENCE, f"no_evidence:subject={subject}",
                               no_evidence_text(topic), scores)
        pair = self.missing_alternatives(asked, top)
        if pair is not None:
            scores["alternatives"] = list(pair)
            return GuardResult(Decision.NO_EVIDENCE, f"no_evidence:alternatives={pair[0]}/{pair[1]}",
                               no_evidence_text(topic), scores)
        named = self.abbreviated_terms(query)
        # what a clause only mentions on the way ("I'm already on ibuprofen,
        # not asking about that") is not what is asked about
        plain = normalize(spelled)
        aside = {w for pattern in s.asides for m in pattern.finditer(plain) for w in m.group(0).split()}
        missing = self.key_terms([w for w in words if w not in found and w not in aside], topic)
        missing += [w for w in named if w not in found and w not in missing]
        scores["missing_terms"] = missing
        d = -1.0 if dense is None else dense
        if d < s.answer_min and not (coverage >= 1.0 and d >= s.lexical_min) and not (shared and not missing):
            if self.asks_off_topic(asked, topic):
                return GuardResult(Decision.OUT_OF_SCOPE, "out_of_scope:asked", out_of_scope_text(topic), scores)
            return GuardResult(Decision.NO_EVIDENCE, f"no_evidence:dense={scores['dense']}",
                               no_evidence_text(topic), scores)
        if missing and (-1.0 if as_written is None else as_written) < s.missing_term_max_dense:
            return GuardResult(Decision.NO_EVIDENCE, f"no_evidence:missing={','.join(missing)}",
                               no_evidence_text(topic), scores)
        return GuardResult(Decision.ANSWER, f"answer:dense={scores['dense']}", "", scores)


#: A message this short (in content words) is read as a follow-up of the
#: user's previous turn by the red-flag check, whatever its words.
FOLLOWUP_MAX_WORDS = 4


def _leans_on_earlier_turn(message: str) -> bool:
    """Does the message ask about what the user said before ("is that normal?",
    "what should I do", "and now?") rather than say something new?"""
    from .retrieval import is_followup

    return is_followup(message) or len(content_words(message)) <= FOLLOWUP_MAX_WORDS


_SYMPTOM = re.compile(r"^(?:ache|aches|aching|achy|hurt|hurts|hurting|pain|pains|painful|swell|swells|swelling|swollen|"
                      r"click|clicks|clicking|pop|pops|popping|crack|cracks|cracking|creak|creaks|grind|grinds|"
                      r"grinding|lock|locks|locking|stiff|stiffen|stiffens|sore|throb|throbs|throbbing|"
                      r"buckle|buckles|give|gives|giving|gave|feel|feels|flare|flares|play|plays|playing)$")


_QUOTED = re.compile(r"""(?:^|(?<=\s))['"“‘]\S+(?:\s+\S+){2,}?['"”’](?=\s|[.,;:?!]|$)""")


def _knee_symptom(question: str, region: set[str]) -> bool:
    """Does the question say what the user's knee does or feels ("my knees
    ache", "knee pain", "my knee is swollen")? Then it is about the knee,
    whatever else it mentions (the weather, a playlist is asked *for* it).
    A quoted phrase of three or more words is what is asked about, not what
    the knee does ("translate 'my knee hurts a lot' into Polish")."""
    words = normalize(_QUOTED.sub(" ", question)).split()
    for i, w in enumerate(words):
        if w in region and i > 0 and words[i - 1] in ("my", "our", "his", "her", "their", "the", "both"):
            nxt = [x for x in words[i + 1:i + 4] if x not in ("up", "is", "are", "keeps", "keep", "really", "so", "still", "always", "more", "a", "lot", "bit", "been", "has", "have", "get", "gets", "getting", "do", "does")]
            if nxt and _SYMPTOM.match(nxt[0]):
                return True
    # "a sharp pain on the inner side of my knee", "aching around the kneecap":
    # a symptom, then a place word, then "my/the ... knee" within nine words
    for i, w in enumerate(words):
        if _SYMPTOM.match(w) and w not in _NOT_PLACED:
            after = words[i + 1:i + 10]
            at = next((j for j, x in enumerate(after) if x in _PLACE_WORDS), None)
            if at is not None and any(y in region and _OWNER_WORDS & set(after[max(0, k - 2):k])
                                      for k, y in enumerate(after) if k > at):
                return True
    return False


_NOT_PLACED = {"play", "plays", "playing", "feel", "feels", "give", "gives", "gave", "giving"}
_PLACE_WORDS = {"on", "in", "at", "around", "behind", "under", "below", "above", "near", "inside"}
_OWNER_WORDS = {"my", "the", "his", "her", "their", "your", "of"}


def content_words(text: str) -> list[str]:
    """The question's words that carry meaning (no stop words), in order."""
    return list(dict.fromkeys(w for w in re.findall(r"[a-z][a-z0-9-]*", normalize(text))
                              if w not in _STOP and (len(w) >= 3 or w == "q")))


_STOP = set("""a an the i me my we our you your he she it they them is are was were be been being am do
does did doing have has had having can could should would will shall may might must of in on at to for
from by with about as into through over under again then once here there when where why how what which
who whom this that these those and but if or because until while so than too very just not no nor only
own same don now up down out off any both each few more most other some such yes ok okay please thanks
get got also really still even much many way thing things lot its im ive dont cant does did
itll youll theyll shell itd youd theyd wont isnt arent wasnt werent doesnt didnt havent hasnt
hadnt couldnt shouldnt wouldnt youre theyre youve weve theyve thats whats theres heres whos
tell know want like help ask thing something anything bit work works mean means happen happens""".split())


_STEMMER = None


def _on_subject(pattern: re.Pattern, question: str, passages: str) -> bool:
    """Does a sentence of ``passages`` match ``pattern`` and share a word
    (by stem) with ``question``? ("how long do I keep taping" and "McConnell
    taping will help ... before the VMO is powerful enough")"""
    asked = {_stem(w) for w in content_words(question)}
    for sentence in re.split(r"(?<=[.!?])\s+", passages):
        if pattern.search(sentence) and asked & {_stem(w) for w in content_words(sentence)}:
            return True
    return False


def _stem(word: str) -> str:
    """Snowball (Porter 2) stem: "swelling" -> "swell", and "shoulder" stays
    "shoulder" (a suffix-stripper would make it "should")."""
    global _STEMMER
    if _STEMMER is None:
        import Stemmer

        _STEMMER = Stemmer.Stemmer("english")
    return _STEMMER.stemWord(word)


_QUOTE_BLOCKING_RULES = ("prompt_injection", "medication", "prescription")


def unsafe_to_quote(sentence: str, rules: RuleSet | None = None) -> str | None:
    """The refusal rule a document sentence trips, if it must not be quoted.

    A document may carry instructions aimed at an assistant ("ignore previous
    instructions ...") or dosing advice; the composer must not repeat them as
    the collection's advice. Pattern rules only (no model needed).
    """
    rules = rules or default_rules()[1]
    norm = _respell(normalize(sentence), rules.spelling)
    raw = unicodedata.normalize("NFKC", sentence).lower()
    for rule in rules.rules:
        if rule.id in _QUOTE_BLOCKING_RULES:
            for group in rule.patterns:
                if all(p.search(norm) or p.search(raw) for p in group):
                    return rule.id
    return None


def _lay_term_in(term: str, passages: str) -> bool:
    """Is a collection word for this patient word (data/lay_terms.yaml) in ``passages``?"""
    from .retrieval import expand_lay_terms

    expanded = expand_lay_terms(term)
    if expanded == term:
        return False
    return any(_term_in(w, passages) for w in content_words(expanded[len(term):]))


def _lay_phrase_words_in(query: str, passages: str) -> set[str]:
    """The words of the query's lay phrases of two or more words whose
    collection terms are in ``passages`` ("growth spurt" when a passage says
    "puberty"): each word on its own is no collection word ("spurt")."""
    from .retrieval import lay_phrases

    said: set[str] = set()
    for phrase, terms in lay_phrases(query):
        words = content_words(phrase)
        if len(words) >= 2 and any(_term_in(w, passages) for w in content_words(terms)):
            said.update(words)
    return said


def _misspelt_in(word: str, passages: str, known: frozenset[str] = frozenset()) -> bool:
    """Is ``word`` a misspelling of a word of the passages ("excercise",
    "exersice")? Close by edit distance (a swap of two letters is one edit)
    as the retriever's speller judges it, and not itself a ``known`` word
    ("rowing" is no typo of "growing")."""
    from .retrieval import _closest

    if len(word) < 5 or word in known:
        return False
    return _closest(word, sorted(set(passages.split())), 1 if len(word) < 6 else 2) is not None


def _term_in(term: str, passages: str) -> bool:
    """Does the term (or its stem) occur as the start of a word in ``passages``?"""
    stem = _stem(term)
    # the word itself too: a stem is not always a prefix of it ("surgery": "surgeri")
    prefixes = {stem if len(stem) >= 4 else term, term}
    return re.search(r"\b(?:" + "|".join(map(re.escape, prefixes)) + ")", passages) is not None


def best_dense(query: str, hits: Sequence[Hit], embedder) -> float | None:
    """The best cosine between ``query`` and the hits' passages.

    Uses ``Hit.dense_score`` where retrieval filled it in and embeds the
    passages itself otherwise (a BM25-only hit list).
    """
    if not hits:
        return None
    scores = [h.dense_score for h in hits if h.dense_score is not None]
    if len(scores) == len(hits):
        return float(max(scores))
    vecs = embedder.encode([query] + [h.chunk.text for h in hits])
    return float((vecs[1:] @ vecs[0]).max())


# --------------------------------------------------------------------------
# Reply texts


def _topic(topic: str | None) -> str:
    if topic:
        return topic
    from .settings import Settings

    return Settings().topic


def help_line(topic: str | None = None) -> str:
    return f"I can help with general information about {_topic(topic)}, from a curated patient-education collection."


def escalation_text(rule: Rule) -> str:
    if rule.reply:
        return rule.reply
    lines = [URGENT_LINE]
    if rule.why:
        lines.append(rule.why)
    lines.append("Please don't wait to see whether it settles, and don't rely on this assistant for it.")
    return "\n\n".join(lines)


def refusal_text(rule: Rule, topic: str | None = None) -> str:
    return f"{rule.reply or 'I cannot help with that request.'}\n\n{help_line(topic)}"


def out_of_scope_text(topic: str | None = None) -> str:
    return f"Sorry, that is outside what I can help with. {help_line(topic)}"


def no_evidence_text(topic: str | None = None) -> str:
    return ("The collection I answer from does not cover that, so I won't guess. "
            "A physiotherapist or doctor can advise you on it.\n\n" + help_line(topic))


# --------------------------------------------------------------------------
# The functions the pipeline calls


_CACHE: "weakref.WeakKeyDictionary[object, Guardrails]" = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def guardrails_for(embedder) -> Guardrails:
    """One :class:`Guardrails` (with its cached vectors) per embedder."""
    with _CACHE_LOCK:
        g = _CACHE.get(embedder)
        if g is None:
            g = Guardrails(embedder)
            _CACHE[embedder] = g
        return g


def pre_retrieval_check(message: str, history: Sequence[Turn] = (), embedder=None,
                        topic: str | None = None) -> GuardResult | None:
    """Escalate or refuse before retrieval; None lets the turn go on.

    Emergencies are checked first, on the message and (for rules with
    ``with_context``) the user's last few turns.
    """
    if embedder is None:
        raise TypeError("pre_retrieval_check needs an embedder (e.g. assistant.embedding.Embedder())")
    return guardrails_for(embedder).pre_retrieval(message, history, topic)


def post_retrieval_decision(query: str, hits: Sequence[Hit], embedder, settings, index=None,
                            question: str | None = None, on_topic: bool = False) -> GuardResult:
    """answer, no_evidence or out_of_scope, from the retrieved hits (and the
    index they came from, for the collection's word statistics; ``question``
    is the user's own message when ``query`` also holds earlier turns;
    ``on_topic``: the conversation so far is about the collection)."""
    return guardrails_for(embedder).post_retrieval(query, hits, settings.topic, index, question, on_topic)


def is_in_scope(query: str, best_chunk_score: float | None, embedder, settings) -> bool:
    """Is ``query`` about the collection's subject (topic anchors or a close passage)?"""
    return guardrails_for(embedder).in_scope(query, best_chunk_score, settings.topic)[0]
