"""`GenerativeLM`: the scoring module of an LLM recommender: a causal LM (LoRA adapters through peft, or fully
trainable) that reads prompt token ids and writes item identifiers; it gives per-sample response losses, beam
search with the KV cache, and last-token hidden states (BIGRec's text embeddings)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from recsys.models.grounding import ItemTrie
from recsys.models.language import CATALOGUE, MINILM_DECODER, CatalogueLM, load_causal_lm, minilm_decoder, pad, positions

log = logging.getLogger(__name__)


class GenerativeLM(nn.Module):
    """A causal LM over prompts and item identifiers.

    Args:
        lm: ``catalogue`` (the small GPT-2 pre-trained here on the catalogue text, `CatalogueLM`),
            ``minilm-decoder`` (all-MiniLM-L6-v2 as a causal decoder), or a local folder / hub id of any Hugging
            Face causal LM.
        catalogue: the catalogue LM's configuration (``lm: catalogue``).
        lora_rank: rank of the LoRA adapters (peft); None trains every weight instead.
        lora_alpha: LoRA scaling α.
        lora_dropout: dropout on the adapters' input.
        target_modules: modules that get adapters (peft's default for the architecture when None: GPT-2
            ``c_attn``, Llama ``q_proj, v_proj``, BERT ``query, value``).
        gradient_checkpointing: recompute activations in backward (memory for time, on GPUs).
    """

    def __init__(
        self,
        lm: str = CATALOGUE,
        catalogue: CatalogueLM | None = None,
        lora_rank: int | None = 8,
        lora_alpha: float = 16.0,
        lora_dropout: float = 0.05,
        target_modules: list[str] | None = None,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if lora_rank is not None and lora_rank < 1:
            raise ValueError(f"lora_rank must be >= 1 (or None for full fine-tuning), got {lora_rank}")
        self.lm, self.catalogue = lm, catalogue or CatalogueLM()
        self.lora_rank, self.lora_alpha, self.lora_dropout = lora_rank, lora_alpha, lora_dropout
        self.target_modules = list(target_modules) if target_modules else None
        self.gradient_checkpointing = gradient_checkpointing
        self.tokenizer: Any = None
        self.source_folder: str | None = None

    # ------------------------------------------------------------------------------------------ building
    def build(self, corpus: list[str], vocabulary: list[str], cache: Path) -> None:
        """Load (or, for ``catalogue``, pre-train once and cache under ``cache``) the LM and add the adapters.

        Args:
            corpus: the catalogue text the catalogue LM is pre-trained on.
            vocabulary: extra text its tokenizer learns (the prompt template).
        """
        if self.lm == CATALOGUE:
            folder: str | Path = self.catalogue.build(corpus, vocabulary, cache)
        elif self.lm == MINILM_DECODER:
            folder = minilm_decoder(cache)
        else:
            folder = self.lm
        model, self.tokenizer = load_causal_lm(folder)
        self.source_folder = str(folder)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        if self.lora_rank is not None:
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(r=self.lora_rank, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                                target_modules=self.target_modules, task_type="CAUSAL_LM")  # fmt: skip
            model = get_peft_model(model, config)
            if self.gradient_checkpointing:
                model.enable_input_require_grads()
        self.network = model

    @property
    def eos(self) -> int:
        """The id that closes every response (BERT: ``[SEP]``)."""
        token = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else self.tokenizer.sep_token_id
        return int(token)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def max_positions(self) -> int | None:
        """The longest sequence the LM's configuration allows (``n_positions`` / ``max_position_embeddings``; None
        where it names none)."""
        config = self.network.config
        found = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
        return int(found) if found else None

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: Sequence[int]) -> str:
        """The text of generated ids, without end-of-sequence or padding (what MiniLM grounding embeds)."""
        return self.tokenizer.decode([i for i in ids if i not in (self.eos, self.pad_id)], skip_special_tokens=True).strip()

    def _parts(self) -> tuple[nn.Module, nn.Module]:
        """The transformer without its head, and the head (BERT's is a transform + decoder, ``cls``): computing
        logits only where a loss is taken saves the vocabulary projection of every prompt position."""
        model = self.network.get_base_model() if hasattr(self.network, "get_base_model") else self.network
        head = model.cls if hasattr(model, "cls") else model.get_output_embeddings()
        return model.base_model, head

    # ------------------------------------------------------------------------------------------ training
    def response_losses(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``[B]`` each sample's mean next-token cross-entropy over its labelled tokens (``labels`` ``[B, L]``,
        -100 where no loss is taken; ``ids`` and ``mask`` ``[B, L]`` right-padded)."""
        backbone, head = self._parts()
        hidden = backbone(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).last_hidden_state
        targets = labels[:, 1:]
        chosen = targets != -100  # [B, L - 1]: position t predicts token t + 1
        logits = head(hidden[:, :-1][chosen])  # [P, V]
        per_token = F.cross_entropy(logits.float(), targets[chosen], reduction="none")
        rows = chosen.nonzero()[:, 0]
        sums = torch.zeros(len(ids), dtype=per_token.dtype, device=ids.device).index_add_(0, rows, per_token)
        return sums / chosen.sum(1).clamp(min=1)

    # ------------------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def last_states(self, rows: list[list[int]], base: bool = True, batch_size: int = 256) -> torch.Tensor:
        """``[N, d]`` the last layer's hidden state at each row's last token (left padding), BIGRec's text
        embedding; ``base`` reads the LM without its adapters, as BIGRec embeds with the base LLaMA."""
        backbone, _ = self._parts()
        out = []
        with self._adapters(enabled=not base):
            for start in range(0, len(rows), batch_size):
                ids, mask = pad(rows[start : start + batch_size], self.pad_id, left=True)
                ids, mask = ids.to(self._device()), mask.to(self._device())
                hidden = backbone(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).last_hidden_state
                out.append(hidden[:, -1].float().cpu())
        return torch.cat(out)

    @torch.no_grad()
    def beam_search(self, prompts: list[list[int]], beams: int, max_new_tokens: int,
                    trie: ItemTrie | None = None, dead: list[dict[int, list[int]]] | None = None,
                    ) -> tuple[list[list[list[int]]], torch.Tensor]:  # fmt: skip
        """Beam search from ``prompts`` with the KV cache, beams ranked by summed log-probability.

        Each prompt is encoded once and its cache copied to its beams (``generate`` encodes every beam's copy of
        the prompt), and only running beams are computed and cached. A finished beam (it wrote the end-of-sequence id) keeps its place and score, so the result
        is the ``beams`` best complete sequences. With a ``trie`` a beam may only continue along it, and not
        into a branch of ``dead[user]`` (`ItemTrie.dead`): every finished beam is then a distinct catalogue item.

        Returns:
            per prompt, its beams' ids (through the end-of-sequence id; a beam cut at ``max_new_tokens`` or with
            nothing left to write has none), and their scores ``[B, beams]`` (-inf where a beam holds nothing).
        """
        backbone, head = self._parts()
        device = self._device()
        ids, mask = pad(prompts, self.pad_id, left=True)
        ids, mask = ids.to(device), mask.to(device)
        out = backbone(input_ids=ids, attention_mask=mask, position_ids=positions(mask), use_cache=True)
        cache, logits = out.cache, head(out.last_hidden_state[:, -1])
        n, vocabulary = len(prompts), logits.shape[-1]
        scores = torch.zeros(n, 1, device=device)  # one live beam per prompt to start
        done = torch.zeros(n, 1, dtype=torch.bool, device=device)
        nodes = [[0] for _ in range(n)]
        sequences: list[list[list[int]]] = [[[]] for _ in range(n)]
        next_position = mask.sum(1, keepdim=True)  # [L, 1]: the cache, mask and logits hold live beams' rows only
        for _ in range(max_new_tokens):
            width = scores.shape[1]
            logp = torch.full((n * width, vocabulary), float("-inf"), device=device)
            logp[~done.view(-1)] = torch.log_softmax(logits.float(), -1)
            logp = logp.view(n, width, vocabulary)
            if trie is not None:
                logp = logp.masked_fill(~self._allowed(trie, nodes, dead, logp.shape), float("-inf"))
            candidates = scores[..., None] + logp  # [n, width, V]
            # A finished beam has one continuation, the pad slot, at its own score (it competes as it stands).
            candidates[..., self.pad_id] = torch.where(done, scores, candidates[..., self.pad_id])
            top, index = candidates.view(n, -1).topk(min(beams, width * vocabulary), dim=1)
            source, token = index // vocabulary, index % vocabulary  # [n, beams]
            was_done = done.gather(1, source)
            live_row = torch.cumsum(~done.view(-1), 0) - 1  # old beam → its row in the live cache
            done = was_done | (token == self.eos) | torch.isinf(top)
            scores = top
            sequences = [[sequences[b][s] + ([] if d else [t]) for s, t, d in zip(*row)]
                         for b, row in enumerate(zip(source.tolist(), token.tolist(), was_done.tolist()))]  # fmt: skip
            if trie is not None:
                nodes = [[trie.children[nodes[b][s]].get(t, 0) if not d else 0 for s, t, d in zip(*row)]
                         for b, row in enumerate(zip(source.tolist(), token.tolist(), was_done.tolist()))]  # fmt: skip
            running = ~done.view(-1)
            if not bool(running.any()):
                break
            # Finished beams never run again: only the running ones keep (and extend) a cache row.
            rows = live_row[(torch.arange(n, device=device)[:, None] * width + source).view(-1)[running]]
            cache.reorder_cache(rows)
            next_position = next_position[rows]
            mask = torch.cat([mask[rows], torch.ones(len(rows), 1, dtype=mask.dtype, device=device)], dim=1)
            step = token.view(-1, 1)[running]
            out = backbone(input_ids=step, attention_mask=mask, position_ids=next_position, cache=cache, use_cache=True)
            cache, logits = out.cache, head(out.last_hidden_state[:, -1])
            next_position = next_position + 1
        finished = [[seq if seq and seq[-1] == self.eos else [] for seq in row] for row in sequences]
        scores = torch.where(torch.tensor([[bool(seq) for seq in row] for row in finished], device=device), scores,
                             torch.full_like(scores, float("-inf")))  # fmt: skip
        return finished, scores.cpu()

    def _allowed(self, trie: ItemTrie, nodes: list[list[int]], dead: list[dict[int, list[int]]] | None,
                 shape: torch.Size) -> torch.Tensor:  # fmt: skip
        """``[n, width, V]`` bool: the continuations each beam's trie node allows, less its user's dead branches."""
        allowed = torch.zeros(shape, dtype=torch.bool)
        for b, row in enumerate(nodes):
            for k, node in enumerate(row):
                allowed[b, k, trie.tokens(node)] = True
                cut = dead[b].get(node) if dead is not None else None
                if cut:
                    allowed[b, k, cut] = False
        return allowed.to(self._device())

    def save_adapter(self, folder: Path) -> None:
        """The LoRA adapter (peft's ``save_pretrained``: safetensors + config; the whole model when fully
        fine-tuned) and the tokenizer, into ``folder``."""
        self.network.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    def merged(self) -> Any:
        """The LM with its adapters merged into the weights (peft's ``merge_and_unload``), for inference."""
        return self.network.merge_and_unload() if self.lora_rank is not None else self.network

    def _adapters(self, enabled: bool) -> Any:
        from contextlib import nullcontext

        return nullcontext() if enabled or self.lora_rank is None else self.network.disable_adapter()

    def _device(self) -> torch.device:
        return next(self.network.parameters()).device
