"""The knowledge base's chromadb embedding functions (chromadb's default one would download an ONNX model).

`revloop-wordllama` is the one in use: scoring.embedding's WordLlama model (256 dimensions, offline). The old
`revloop-hashed-ngrams` stays registered only so that a knowledge base persisted with it can still be opened
and re-embedded (tools.kb does that on first use). Imported by tools.kb when the knowledge base is first used,
so chromadb is not imported before then."""

from __future__ import annotations

from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from scoring import embedding

HASHED_DIMENSIONS = 1024


@register_embedding_function
class WordLlamaEmbedding(EmbeddingFunction[Documents]):
    """Offline sentence embedding: WordLlama l2_supercat, 256 dimensions, unit length, numpy only."""

    def __init__(self) -> None:
        pass

    def __call__(self, input: Documents) -> Embeddings:  # noqa: A002 - chromadb's parameter name
        return list(embedding.embed(list(input)))

    @staticmethod
    def name() -> str:
        return "revloop-wordllama"

    def get_config(self) -> dict[str, Any]:
        return {"model": embedding.NAME, "dimensions": embedding.DIMENSIONS}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> WordLlamaEmbedding:
        return WordLlamaEmbedding()

    def default_space(self) -> str:
        return "cosine"


@register_embedding_function
class HashedNgramEmbedding(EmbeddingFunction[Documents]):
    """The previous embedding (hashed word 1-2-grams and character 3-5-grams): only read, to migrate from."""

    def __init__(self) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self._words = HashingVectorizer(
            n_features=HASHED_DIMENSIONS, ngram_range=(1, 2), alternate_sign=False, norm="l2", stop_words="english"
        )
        self._chars = HashingVectorizer(
            n_features=HASHED_DIMENSIONS, analyzer="char_wb", ngram_range=(3, 5), alternate_sign=False, norm="l2"
        )

    def __call__(self, input: Documents) -> Embeddings:  # noqa: A002 - chromadb's parameter name
        texts = [t or "" for t in input]
        dense = self._words.transform(texts).toarray() + 0.7 * self._chars.transform(texts).toarray()
        norms = np.linalg.norm(dense, axis=1, keepdims=True)
        return [row.astype(np.float32) for row in dense / np.where(norms == 0, 1, norms)]

    @staticmethod
    def name() -> str:
        return "revloop-hashed-ngrams"

    def get_config(self) -> dict[str, Any]:
        return {"dimensions": HASHED_DIMENSIONS}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> HashedNgramEmbedding:
        return HashedNgramEmbedding()

    def default_space(self) -> str:
        return "cosine"
