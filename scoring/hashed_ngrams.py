"""The old offline text embedding, kept as the eval baseline (the paraphrase suite prints it next to WordLlama):
hashed word and character n-grams, L2-normalised.

Nothing is downloaded: the vector space is fixed by the hash, so the same text always gets the same
vector on every machine. It captures shared wording and word forms ("automate" ~ "automation"),
not paraphrase: scoring.embedding (WordLlama) replaced it everywhere else.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize

DIMENSIONS = 2**15

_words = HashingVectorizer(
    n_features=DIMENSIONS, ngram_range=(1, 2), alternate_sign=False, norm=None, stop_words="english"
)
_chars = HashingVectorizer(
    n_features=DIMENSIONS, analyzer="char_wb", ngram_range=(3, 5), alternate_sign=False, norm=None
)


def embed(texts: list[str]) -> sparse.csr_matrix:
    """Rows of unit length; the dot product of two rows is their cosine similarity."""
    cleaned = [t or "" for t in texts]
    combined = sparse.hstack([normalize(_words.transform(cleaned)), normalize(_chars.transform(cleaned)) * 0.7])
    return normalize(sparse.csr_matrix(combined))


@lru_cache(maxsize=256)
def embed_statements(statements: tuple[str, ...]) -> sparse.csr_matrix:
    return embed(list(statements))


def best_match(texts: list[str], statements: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """For each text: (index of the most similar statement, its cosine similarity)."""
    similarities = (embed(texts) @ embed_statements(statements).T).toarray()
    return similarities.argmax(axis=1), similarities.max(axis=1)
