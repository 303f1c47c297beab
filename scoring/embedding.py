"""The offline sentence embedding: WordLlama (`wordllama` on PyPI, model l2_supercat, 256 dimensions).

The weights (16 MB) and the tokenizer ship inside the wheel and run on numpy: nothing is downloaded, ever.
wordllama's own `WordLlama.load()` looks for the tokenizer in the wrong folder and would fetch it from Hugging
Face, so the model is built here from the two packaged files directly. It is loaded once per process, on first
use (0.3 s), never at import: `revloop --help` and a worker that scores no free text never pay for it.

Used by `semantic` rubric criteria, the knowledge base's chromadb embedding function (similar won cases) and
fuzzy company dedupe. The old hashed n-gram vectors live on in scoring.hashed_ngrams as the eval baseline.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

MODEL = "l2_supercat"
DIMENSIONS = 256
NAME = f"wordllama-{MODEL}-{DIMENSIONS}"

_lock = threading.Lock()
_model: Any = None


def package_files() -> tuple[Path, Path]:
    """(weights, tokenizer) inside the installed wordllama package."""
    import importlib.util

    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the wordllama package is not installed (pip install 'wordllama~=0.4.0')")
    root = Path(next(iter(spec.submodule_search_locations)))
    return (
        root / "weights" / f"{MODEL}_{DIMENSIONS}.safetensors",
        root / "tokenizers" / f"{MODEL}_tokenizer_config.json",
    )


def model() -> Any:
    """The process's one WordLlamaInference, loaded from the packaged files on first use."""
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                _model = _load()
    return _model


def _load() -> Any:
    weights, tokenizer_file = package_files()
    for path in (weights, tokenizer_file):
        if not path.is_file():
            raise RuntimeError(f"wordllama's packaged model file is missing: {path}")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    # wordllama's __init__ calls logging.basicConfig(level=INFO): undo that so its import changes no logging.
    from safetensors import safe_open
    from tokenizers import Tokenizer
    from wordllama.inference import WordLlamaInference

    root.handlers[:], root.level = handlers, level
    with safe_open(str(weights), framework="np", device="cpu") as f:
        matrix = f.get_tensor("embedding.weight")
    return WordLlamaInference(matrix, Tokenizer.from_file(str(tokenizer_file)))


def embed(texts: list[str]) -> np.ndarray:
    """One unit-length float32 row per text (an empty text gets a zero row); a dot product is a cosine."""
    cleaned = [str(t or "").strip() for t in texts]
    out = np.zeros((len(cleaned), DIMENSIONS), dtype=np.float32)
    rows = [i for i, t in enumerate(cleaned) if t]
    if rows:
        vectors = model().embed([cleaned[i] for i in rows], norm=False)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        out[rows] = vectors / np.where(norms == 0, 1, norms)
    return out


def similarity(a: str, b: str) -> float:
    vectors = embed([a, b])
    return float(vectors[0] @ vectors[1])


@lru_cache(maxsize=256)
def embed_statements(statements: tuple[str, ...]) -> np.ndarray:
    return embed(list(statements))


def best_match(texts: list[str], statements: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """For each text: (index of the most similar statement, its cosine similarity)."""
    similarities = embed(texts) @ embed_statements(statements).T
    return similarities.argmax(axis=1), similarities.max(axis=1)
