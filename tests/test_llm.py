"""The LLM recommender: prompts and windows, truncation at item boundaries, identifiers, the catalogue trie, beam
search against log-probabilities computed by hand, grounding, caches, loading errors, and the shared contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from recsys.data.interactions import Interactions
from recsys.data.prompts import (PromptTemplate, PromptTokens, TokenSamples, history_windows, item_identifiers,
                                 item_titles)  # fmt: skip
from recsys.data.sequences import Sequences
from recsys.errors import RunError
from recsys.models.generative import GenerativeLM
from recsys.models.grounding import ItemTrie, popularity_adjusted
from recsys.models.language import CatalogueLM, load_causal_lm
from recsys.tasks.llm import LLMTask
from recsys.testing import RecommenderContract, two_communities

TINY_LM = CatalogueLM(vocab_size=300, layers=1, hidden=32, heads=2, positions=256, epochs=2, batch_size=16)


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory) -> None:
    """Catalogue LMs, tokenised samples and catalogue states of this module go to a folder of its own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECSYS_DATA_DIR", str(tmp_path_factory.mktemp("llm-cache")))
        yield


def tiny_task(**kwargs) -> LLMTask:
    model = GenerativeLM(catalogue=TINY_LM, lora_rank=kwargs.pop("lora_rank", None))
    return LLMTask(model, **{"lr": 3e-3, "warmup_steps": 0, "max_history": 5, "seed": 0, **kwargs})


def sequences(*rows: list[int], n_items: int = 10) -> Sequences:
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    return Sequences(indptr=indptr, items=np.array([i for r in rows for i in r], dtype=np.int64), n_items=n_items)


# ---------------------------------------------------------------------------------------------- prompts and windows
def test_windows_take_up_to_max_history_previous_items() -> None:
    windows = history_windows(sequences([1, 2, 3, 4], [5], [6, 7]), max_history=2)
    assert windows.users.tolist() == [0, 0, 0, 2]
    assert windows.targets.tolist() == [2, 3, 4, 7]
    assert [windows.of(s).tolist() for s in range(len(windows))] == [[1], [1, 2], [2, 3], [6]]
    tiled = history_windows(sequences([1, 2, 3, 4, 5, 6, 7], [8, 9]), max_history=2, stride=3)
    assert tiled.targets.tolist() == [4, 7, 9]  # counted back from each user's last item
    assert [tiled.of(s).tolist() for s in range(len(tiled))] == [[2, 3], [5, 6], [8]]


def test_default_template_is_dealrecs_alpaca_prompt() -> None:
    text = PromptTemplate().text(["A (1990)", "B (1991)"])
    assert text.startswith("Below is an instruction that describes a task")
    assert "### Instruction:\nGiven the movies that the user watched before" in text
    assert text.endswith("with titles as: A (1990); B (1991);\n\n### Response:\n")


def characters(text: str) -> list[int]:
    return [ord(c) for c in text]


def test_prompt_tokens_are_the_template_around_whole_items() -> None:
    template = PromptTemplate(preamble="P", instruction="I", history_prefix="H ", separator=", ", history_suffix=".")
    tokens = PromptTokens(template, characters, ["aa", "bbb", "c"], eos=0, max_prompt_tokens=200)
    assert "".join(map(chr, tokens.prompt(np.array([0, 2])))) == template.text(["aa", "c"])
    assert tokens.response(1) == characters("bbb") + [0]


def test_too_long_prompt_drops_the_oldest_items_never_part_of_one() -> None:
    template = PromptTemplate(preamble="", instruction="", history_prefix="", separator=";", history_suffix="")
    fixed = len(template.head()) + len(template.tail())
    tokens = PromptTokens(template, characters, ["aaaa", "bb", "cc"], eos=0, max_prompt_tokens=fixed + 6)
    text = "".join(map(chr, tokens.prompt(np.array([0, 1, 2]))))  # 4 + 1 + 2 + 1 + 2 = 10 > 6: "aaaa" goes
    assert text == template.text(["bb", "cc"])
    with pytest.raises(ValueError, match=f"max_prompt_tokens {fixed + 3} cannot hold"):
        PromptTokens(template, characters, ["aaaa"], eos=0, max_prompt_tokens=fixed + 3)


def test_identifiers() -> None:
    train, _ = two_communities()
    titles = item_titles(train)
    assert titles[0] == f"Item {train.items.decode([0])[0]}"  # no title feature: the raw id
    seq = item_identifiers(train, "sequential")
    first = Sequences.from_interactions(train).items[0]
    assert seq[first] == "1001" and sorted(map(int, seq)) == list(range(1001, 1001 + train.n_items))
    collaborative = item_identifiers(train, "collaborative", branching=4)
    assert len(set(collaborative)) == train.n_items
    assert all(part.startswith("c") for ident in collaborative for part in ident.split())


def test_movie_titles_carry_their_year(ml100k: Interactions) -> None:
    assert item_titles(ml100k)[0] == "Toy Story (1995)"


def test_token_samples_subset_and_round_trip(tmp_path: Path) -> None:
    template = PromptTemplate(preamble="", instruction="", history_prefix="", separator=";", history_suffix="")
    tokens = PromptTokens(template, characters, ["a", "b", "c"], eos=0)
    samples = TokenSamples.build(tokens, history_windows(sequences([0, 1, 2], n_items=3), 2))
    assert len(samples) == 2
    ids, prompt = samples[1]
    assert ids.tolist() == tokens.prompt(np.array([0, 1])) + [ord("c"), 0] and prompt == len(ids) - 2
    picked = samples.subset(np.array([1]))
    assert picked[0][0].tolist() == ids.tolist()
    samples.save(tmp_path / "s.npz")
    assert TokenSamples.load(tmp_path / "s.npz")[1][0].tolist() == ids.tolist()


# ---------------------------------------------------------------------------------------------- trie and grounding
def test_trie_walks_items_and_prunes_dead_branches() -> None:
    trie = ItemTrie([[5, 6, 0], [5, 7, 0], [8, 0], [5, 6, 0]])  # items 0 and 3 share their ids
    assert trie.items_at[trie.walk([5, 6, 0])] == [0, 3]
    assert trie.walk([9]) is None
    assert sorted(trie.tokens(0).tolist()) == [5, 8]
    assert trie.dead([0]) == {}  # item 3 still lives under 5 → 6
    assert trie.dead([0, 3]) == {trie.walk([5]): [6], trie.walk([5, 6]): [0]}
    everything_under_5 = {node: sorted(tokens) for node, tokens in trie.dead([0, 1, 3]).items()}
    assert everything_under_5 == {0: [5], trie.walk([5]): [6, 7], trie.walk([5, 6]): [0], trie.walk([5, 7]): [0]}


def test_popularity_adjusted_by_hand() -> None:
    distances = torch.tensor([[1.0, 2.0, 3.0]])
    popularity = torch.tensor([0.0, 5.0, 10.0])
    torch.testing.assert_close(popularity_adjusted(distances, popularity, 0.0), torch.tensor([[0.0, 0.5, 1.0]]))
    # W = [0, .5, 1]: D̂ · (1 + W)^-2 = [0, .5 / 2.25, 1 / 4]
    torch.testing.assert_close(popularity_adjusted(distances, popularity, 2.0), torch.tensor([[0.0, 0.5 / 2.25, 0.25]]))


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> GenerativeLM:
    torch.manual_seed(0)
    model = GenerativeLM(catalogue=TINY_LM, lora_rank=4)
    model.build(["alpha beta.", "gamma delta.", "alpha gamma."], ["instruction words"], tmp_path_factory.mktemp("lm"))
    model.eval()
    return model


def sequence_logprob(model: GenerativeLM, prompt: list[int], answer: list[int]) -> float:
    """Σ log p(answer_t | prompt, answer_<t) by one plain forward of the whole sequence."""
    ids = torch.tensor([prompt + answer])
    with torch.no_grad():
        logits = model.network(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return float(sum(logp[len(prompt) + t - 1, token] for t, token in enumerate(answer)))


def test_constrained_beams_are_catalogue_items_scored_by_their_logprob(tiny_lm: GenerativeLM) -> None:
    items = [tiny_lm.encode(t) + [tiny_lm.eos] for t in ["alpha beta", "gamma delta", "alpha gamma", "beta"]]
    trie = ItemTrie(items)
    prompts = [tiny_lm.encode("alpha"), tiny_lm.encode("gamma delta alpha")]
    dead = [trie.dead([0]), {}]
    found, scores = tiny_lm.beam_search(prompts, beams=3, max_new_tokens=max(map(len, items)), trie=trie, dead=dead)
    for user, (beams, row) in enumerate(zip(found, scores)):
        codes = [trie.items_at[trie.walk(ids)][0] for ids in beams]
        assert len(set(codes)) == 3  # distinct real items
        assert 0 not in codes if user == 0 else True
        for ids, value in zip(beams, row.tolist()):
            assert value == pytest.approx(sequence_logprob(tiny_lm, prompts[user], ids), abs=1e-4)
        assert row.tolist() == sorted(row.tolist(), reverse=True)
    # every item is a candidate: the three beams of user 1 are its three most likely of the four
    exact = sorted(range(4), key=lambda i: -sequence_logprob(tiny_lm, prompts[1], items[i]))[:3]
    assert sorted(trie.items_at[trie.walk(ids)][0] for ids in found[1]) == sorted(exact)


def test_one_beam_is_greedy_decoding(tiny_lm: GenerativeLM) -> None:
    prompt = tiny_lm.encode("alpha beta")
    found, _ = tiny_lm.beam_search([prompt], beams=1, max_new_tokens=6)
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(6):
            token = int(tiny_lm.network(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            ids.append(token)
            if token == tiny_lm.eos:
                break
    greedy = ids[len(prompt) :]
    assert found[0][0] == (greedy if greedy[-1] == tiny_lm.eos else [])


def test_response_losses_match_transformers_loss(tiny_lm: GenerativeLM) -> None:
    ids = torch.tensor([tiny_lm.encode("alpha beta gamma delta")])
    mask = torch.ones_like(ids)
    labels = ids.clone()
    labels[0, :2] = -100  # the loss on the last tokens only
    with torch.no_grad():
        expected = tiny_lm.network(input_ids=ids, attention_mask=mask, labels=labels).loss
        assert float(tiny_lm.response_losses(ids, mask, labels)[0]) == pytest.approx(float(expected), abs=1e-5)


def test_unknown_or_unloadable_model_path_names_it(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no-such-model"):
        load_causal_lm(tmp_path / "no-such-model")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(RunError, match="broken"):
        load_causal_lm(tmp_path / "broken")


# ---------------------------------------------------------------------------------------------- the task
class QuickLLM(LLMTask):
    """Enough epochs on the contract's tiny data."""

    def fit(self, train, valid=None, **kwargs):
        return super().fit(train, valid, **{"max_epochs": 12, "batch_size": 16, **kwargs})


def quick_task(**kwargs) -> QuickLLM:
    model = GenerativeLM(catalogue=TINY_LM, lora_rank=None)
    return QuickLLM(model, **{"lr": 5e-3, "warmup_steps": 0, "max_history": 5, "seed": 0, **kwargs})


class TestConstrainedLLM(RecommenderContract):
    unsupported = frozenset({"similar_items"})

    def make_model(self) -> LLMTask:
        return quick_task()


def test_l2_groundings_and_gamma_on_validation() -> None:
    train, test = two_communities()
    task = quick_task(grounding="l2-lm", gamma="auto").fit(train, test)
    scores = task.score(torch.arange(4))
    assert scores.shape == (4, train.n_items) and torch.isfinite(scores).all()
    assert task.gammas_["l2-lm"] in task.gamma_search_["l2-lm"]
    best = max(task.gamma_search_["l2-lm"].values())
    assert task.gamma_search_["l2-lm"][task.gammas_["l2-lm"]] == best
    ev = task.judge(test, [train])
    assert 0.0 <= ev.summary["exact_match"] <= 1.0
    task.grounding = "l2-minilm"
    assert task.score(torch.arange(2)).shape == (2, train.n_items)


def test_tokenised_samples_are_cached_and_keyed_by_the_template(tmp_path: Path) -> None:
    train, _ = two_communities()
    task = quick_task()
    task.restore(train)
    task.training_examples(train)
    cached = sorted(task.cache_folder().glob("samples-*.npz"))
    task.training_examples(train)
    assert sorted(task.cache_folder().glob("samples-*.npz")) == cached
    other = quick_task(template=PromptTemplate(instruction="Recommend a film."))
    other.restore(train)
    other.training_examples(train)
    assert len(sorted(task.cache_folder().glob("samples-*.npz"))) == len(cached) + 1


def test_samples_are_a_seeded_subset_and_loss_skips_the_prompt() -> None:
    train, _ = two_communities()
    task = quick_task(samples=7)
    task.restore(train)
    examples = task.training_examples(train)
    assert len(examples) == 7
    batch = task.collate([examples[0], examples[1]])
    ids, prompt = examples[0]
    assert (batch["labels"][0, :prompt] == -100).all()
    assert batch["labels"][0, prompt : len(ids)].tolist() == ids[prompt:].tolist()
    everything = quick_task(samples=7, train_on_inputs=True)
    everything.restore(train)
    assert (everything.collate([examples[0]])["labels"][0, : len(ids)] >= 0).all()


def test_recsys_fit_of_the_shipped_yaml_saves_the_adapter_and_loads_back(tiny_dataset, monkeypatch) -> None:
    import recsys
    from recsys.cli import main

    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tiny_dataset / "runs"))
    small = '{"vocab_size": 300, "layers": 1, "hidden": 32, "heads": 2, "positions": 256, "epochs": 1}'
    args = ["fit", "--config", "experiments/ml-100k/bigrec.yaml", "--data.dataset", "tiny", "--trainer.max_epochs", "1",
            "--trainer.enable_progress_bar", "false", "--model.init_args.model.init_args.catalogue", small,
            "--model.init_args.samples", "64", "--model.init_args.gamma", "0",
            "--model.init_args.model.init_args.lora_rank", "4"]  # fmt: skip
    assert main(args) == 0
    run = tiny_dataset / "runs" / "tiny" / "bigrec" / "version_0"
    assert (run / "adapter" / "adapter_config.json").exists() and (run / "adapter" / "adapter_model.safetensors").exists()
    record = __import__("json").loads((run / "results.json").read_text())[0]
    assert record["metrics"]["exact_match"] == 1.0  # constrained decoding emits only catalogue items
    loaded = recsys.load(run)
    assert isinstance(loaded, LLMTask)
    users = torch.arange(4)
    assert torch.equal(loaded.score(users), loaded.score(users))
