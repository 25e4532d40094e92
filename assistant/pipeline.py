"""The assistant: one object, one call.

``Assistant.respond(message, history) -> Reply`` runs a whole guarded turn:

1. input checks (empty, over-long, control characters) -> a friendly reply;
2. pre-retrieval guardrails: emergencies are escalated first, then
   injections and unsafe requests are refused;
3. retrieval (follow-up resolved, typos corrected, hybrid search);
4. post-retrieval decision: out of scope, no evidence, or answer;
5. the answer is composed from the retrieved passages only, with ``[n]``
   markers and a closing line urging clinical follow-up.

The CLI, the evaluator and the web app all use this one object. The index
can be swapped atomically (:meth:`Assistant.reload`) while other threads keep
answering from the old one.
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from typing import Sequence

from .schema import Decision, Reply, Turn

#: Refusals (by reason prefix) followed by general information from the
#: collection: a diagnosis is declined, what the symptoms can mean in general
#: is not.
GENERAL_INFORMATION_AFTER = "refuse:diagnosis"
GENERAL_LEAD_IN = "What the collection says in general about what you describe:"

#: A message of thanks, greeting or goodbye only (checked after the safety
#: rules): a short reply, not the passages of the earlier turn again.
COURTESY = re.compile(
    r"\W*(?:(?:ok(?:ay)?|great|brilliant|perfect|cool|nice|lovely|awesome|fab|grand|right|alright|"
    r"thanks|thank you|thank u|thanks a lot|many thanks|thx|ty|cheers|ta|much appreciated|"
    r"that helps|that helped|that s helpful|thats helpful|that is helpful|helpful|got it|understood|"
    r"bye|goodbye|bye bye|see you|see ya|cya|later|good night|night|have a good day|take care|"
    r"hi|hello|hey|hiya|good morning|good afternoon|good evening|so much|very much|again|"
    r"mate|x+|you too|for (?:the|your) help|for that)[\s,.!?:)(-]*)+", re.IGNORECASE)


def courtesy_reply(text: str) -> str:
    """The opening of the reply to a message :data:`COURTESY` matches."""
    if re.search(r"\b(?:thank\w*|thx|ty|cheers|ta|appreciated|help\w*)\b", text, re.IGNORECASE):
        return "You're welcome."
    if re.search(r"\b(?:bye|goodbye|see you|see ya|cya|later|night|take care|good day)\b", text, re.IGNORECASE):
        return "Take care."
    return "Hello."

#: Messages longer than this are cut before processing (a question is short).
MAX_MESSAGE_CHARS = 2000

EMPTY_MESSAGE = ("Please type a question about your knee, for example: "
                 "\"What does the VMO do?\" or \"Why does my kneecap click on stairs?\"")


def clean_message(message) -> str:
    """Printable text: control characters dropped, letters typed with spaces
    between them read as words (:func:`~assistant.guardrails.unspace`, before
    the word gaps are lost), white space folded."""
    from .guardrails import unspace

    if message is None:
        return ""
    if isinstance(message, bytes):
        message = message.decode("utf-8", errors="replace")
    message = str(message)
    message = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in message)
    return " ".join(unspace(message).split())


def clean_history(history) -> list[Turn]:
    """Accept Turn objects or {"role", "content"} dicts; drop malformed turns."""
    turns: list[Turn] = []
    for item in history or ():
        if isinstance(item, Turn):
            role, content = item.role, item.content
        elif isinstance(item, dict):
            role, content = item.get("role"), item.get("content")
        else:
            continue
        if role in ("user", "assistant") and isinstance(content, str):
            text = clean_message(content)[:MAX_MESSAGE_CHARS]
            if text:
                turns.append(Turn(role, text))
    return turns[-12:]


class Assistant:
    """Holds the loaded model, the open index and its retriever."""

    def __init__(self, settings, embedder=None, index=None):
        from .embedding import Embedder

        self.settings = settings
        self.embedder = embedder or Embedder(settings.model, settings.device, settings.batch_size)
        self._lock = threading.Lock()
        self._retriever = None
        from pathlib import Path

        from .guardrails import guardrails_for

        # Guardrail example vectors are kept beside the index between runs.
        guardrails_for(self.embedder).cache_dir = Path(settings.index_dir) / "cache"
        if index is not None:
            self._install(index)

    @classmethod
    def from_settings(cls, settings) -> "Assistant":
        """Load the model and the index at settings.index_dir."""
        assistant = cls(settings)
        assistant.reload()
        return assistant

    @property
    def retriever(self):
        if self._retriever is None:
            self.reload()
        return self._retriever

    @property
    def index(self):
        return self.retriever.index

    def _install(self, index) -> None:
        from .retrieval import Retriever

        retriever = Retriever(index, self.embedder, self.settings)
        with self._lock:
            self._retriever = retriever  # one reference swap: readers see old or new

    def reload(self) -> None:
        """Open the index's live generation and swap it in."""
        from .index import load_index

        self._install(load_index(self.settings.index_path, self.embedder.model_name))

    def warm_up(self) -> None:
        """Load the model and run one query so the first user waits less."""
        self.respond("What does the VMO do?")

    def _remember_sentences(self, index, hits) -> None:
        """Hand the composer the index's sentence vectors of the hits, so it
        does not embed those sentences again."""
        remember = getattr(self.embedder, "remember", None)
        if remember is None:
            return
        for hit in hits:
            row = index.row_of(hit.chunk.chunk_id)
            sentences = index.sentences_of(row) if row is not None else []
            if sentences:
                remember([hit.chunk.text[s:e] for s, e, _ in sentences], [v for _, _, v in sentences])

    def _retrieve_and_decide(self, retriever, text: str, turns, timings: dict):
        """(query, hits, verdict) for a message past the pre-retrieval checks:
        answer, no_evidence or out_of_scope."""
        from . import guardrails
        from .retrieval import points_back

        t = time.perf_counter()
        query = retriever.prepare_query(text, turns)
        hits = retriever.search_prepared(query, question=text)
        timings["retrieve"] = round((time.perf_counter() - t) * 1000, 2)

        t = time.perf_counter()
        verdict = guardrails.post_retrieval_decision(query, hits, self.embedder, self.settings, retriever.index,
                                                       question=text)
        if verdict.decision in (Decision.NO_EVIDENCE, Decision.OUT_OF_SCOPE) and turns:
            # Not answerable alone, but it is part of a conversation: read it
            # with the earlier turn ("how far down do I bend" after "what are
            # wall slides"), and keep that reading only if it can be answered.
            context_query, context_hits = retriever.prepare_query(text, turns, in_context=True), hits
            if context_query != query:
                context_hits = retriever.search_prepared(context_query, question=text)
                second = guardrails.post_retrieval_decision(context_query, context_hits, self.embedder,
                                                            self.settings, retriever.index, question=text)
                if second.decision == Decision.ANSWER:
                    query, hits, verdict = context_query, context_hits, second
            if (verdict.reason == "out_of_scope" and points_back(text)
                    and context_query != retriever.prepare_query(text)  # read with the turns
                    and self._on_topic_so_far(retriever, turns)):
                # Low cosines to the topic say little about a follow-up that
                # points back ("my skin reacts to it") in a conversation about
                # the collection: read in context, it is answered or not
                # covered, unless it says it is about something else
                # (checked inside, as for any question).
                third = guardrails.post_retrieval_decision(context_query, context_hits, self.embedder,
                                                           self.settings, retriever.index, question=text,
                                                           on_topic=True)
                query, hits, verdict = context_query, context_hits, third
        timings["decide"] = round((time.perf_counter() - t) * 1000, 2)
        return query, hits, verdict

    def _on_topic_so_far(self, retriever, turns) -> bool:
        """Is the user's previous turn, on its own, about the collection?"""
        from . import guardrails

        users = [t for t in turns if t.role == "user" and t.content.strip()]
        if not users or not len(retriever.index):
            return False
        previous = users[-1].content
        best = retriever.index.sentence_search(self.embedder.encode_query(previous), 1)
        return guardrails.is_in_scope(previous, best[0][1] if best else None, self.embedder, self.settings)

    def _general_information(self, text: str, turns, refusal: str, timings: dict) -> dict | None:
        """A refused diagnosis, followed by what the collection says in general
        about the symptoms described, quoted and cited as an answer is (None
        when the collection has nothing that answers them)."""
        from . import answer, guardrails

        retriever = self.retriever
        query, hits, verdict = self._retrieve_and_decide(retriever, text, turns, timings)
        if verdict.decision != Decision.ANSWER:
            return None
        self._remember_sentences(retriever.index, hits)
        composed, citations = answer.compose_answer(query, hits, self.embedder, self.settings, asked=text)
        decline = refusal.split("\n\n")[0]
        reply = (f"{decline}\n\n{GENERAL_LEAD_IN}\n\n{answer.answer_body(composed)}\n\n{guardrails.FOLLOW_UP}")
        return dict(text=reply, citations=tuple(citations), retrieved=tuple(hits), query=query)

    def respond(self, message, history: Sequence[Turn | dict] = ()) -> Reply:
        """Run one guarded turn; never raises for any user input."""
        from . import answer, guardrails

        started = time.perf_counter()
        timings: dict[str, float] = {}

        def done(reply_kwargs: dict) -> Reply:
            timings["total"] = round((time.perf_counter() - started) * 1000, 2)
            return Reply(timings=timings, **reply_kwargs)

        text = clean_message(message)
        turns = clean_history(history)
        if not text:
            return done(dict(decision=Decision.OUT_OF_SCOPE, text=EMPTY_MESSAGE, reason="empty_message"))
        truncated = len(text) > MAX_MESSAGE_CHARS
        text = text[:MAX_MESSAGE_CHARS]

        t = time.perf_counter()
        guard = guardrails.pre_retrieval_check(text, turns, self.embedder, topic=self.settings.topic)
        timings["guard"] = round((time.perf_counter() - t) * 1000, 2)
        if guard is not None:
            if guard.reason.startswith(GENERAL_INFORMATION_AFTER):
                general = self._general_information(text, turns, guard.message_text, timings)
                if general is not None:
                    return done(dict(decision=guard.decision, reason=guard.reason, **general))
            return done(dict(decision=guard.decision, text=guard.message_text, reason=guard.reason))

        if COURTESY.fullmatch(text):
            # "thanks, bye" ends a chat: no passages to quote again
            return done(dict(decision=Decision.OUT_OF_SCOPE, reason="courtesy",
                             text=f"{courtesy_reply(text)} {guardrails.help_line(self.settings.topic)}"))

        retriever = self.retriever  # one index for the whole turn, even mid-swap
        query, hits, verdict = self._retrieve_and_decide(retriever, text, turns, timings)
        if verdict.decision != Decision.ANSWER:
            return done(dict(decision=verdict.decision, text=verdict.message_text, reason=verdict.reason,
                             retrieved=tuple(hits), query=query))
        self._remember_sentences(retriever.index, hits)
        t = time.perf_counter()
        if self.settings.generator:
            from .generator import generate_answer

            generated = generate_answer(query, hits, self.embedder, self.settings)
            reply_text, citations = generated.text, generated.citations
            timings["generated"] = float(generated.generated)
        else:
            reply_text, citations = answer.compose_answer(query, hits, self.embedder, self.settings, asked=text)
        if truncated:
            reply_text = ("(Your message was long, so I read only its first "
                          f"{MAX_MESSAGE_CHARS} characters.)\n\n" + reply_text)
        timings["compose"] = round((time.perf_counter() - t) * 1000, 2)
        return done(dict(decision=Decision.ANSWER, text=reply_text, citations=tuple(citations),
                         retrieved=tuple(hits), reason=verdict.reason, query=query))
