"""Stage 2, tokenization: Hugging Face `tokenizers` WordPiece from the backbone's own files.

    [CLS] the movie was absolutely fantastic ! [SEP]  ->  101 1996 3185 2001 7078 10392 999 102

Texts are encoded once, in batch, by the Rust tokenizer, truncated but not padded; batches are padded
later to their own longest text (dynamic padding), with attention mask 1 for tokens and 0 for padding.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from finebert.errors import ModelError

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


class Tokenizer:
    def __init__(self, folder: str | Path, max_length: int = 128):
        from tokenizers import Tokenizer as RustTokenizer

        self.folder = Path(folder)
        if (self.folder / "tokenizer.json").is_file():
            self._tok = RustTokenizer.from_file(str(self.folder / "tokenizer.json"))
        elif (self.folder / "vocab.txt").is_file():
            from tokenizers.implementations import BertWordPieceTokenizer

            settings = _read_json(self.folder / "tokenizer_config.json")
            lowercase = settings.get("do_lower_case", True)
            self._tok = BertWordPieceTokenizer(str(self.folder / "vocab.txt"), lowercase=lowercase)._tokenizer
        else:
            raise ModelError(f"{self.folder}: no tokenizer.json or vocab.txt; the backbone folder needs its tokenizer files")
        self._tok.no_padding()
        self.max_length = max_length
        self._tok.enable_truncation(max_length)
        pad_token = _read_json(self.folder / "special_tokens_map.json").get("pad_token") or \
            _read_json(self.folder / "tokenizer_config.json").get("pad_token") or "[PAD]"
        if isinstance(pad_token, dict):  # {"content": "[PAD]", ...}
            pad_token = pad_token.get("content", "[PAD]")
        self.pad_token = pad_token
        self.pad_id = self._tok.token_to_id(pad_token) or 0

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, [CLS] ... [SEP], truncated to max_length, not padded."""
        return [e.ids for e in self._tok.encode_batch(texts)]

    def pad(self, sequences: list[list[int]], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Pads to the longest sequence (or `length`): returns input_ids and attention_mask, both (B, T) int64."""
        width = length or max(len(s) for s in sequences)
        ids = np.full((len(sequences), width), self.pad_id, dtype=np.int64)  # (B, T)
        mask = np.zeros((len(sequences), width), dtype=np.int64)  # (B, T)
        for row, seq in enumerate(sequences):
            ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        return ids, mask

    def explain(self, text: str, pad_to: int | None = None) -> dict:
        """Tokens, ids and attention mask of one text, padded to `pad_to` if given (for `finebert tokenize`)."""
        enc = self._tok.encode(text)
        tokens, ids = list(enc.tokens), list(enc.ids)
        mask = [1] * len(ids)
        if pad_to is not None and pad_to > len(ids):
            extra = pad_to - len(ids)
            tokens += [self.pad_token] * extra
            ids += [self.pad_id] * extra
            mask += [0] * extra
        return {"tokens": tokens, "input_ids": ids, "attention_mask": mask}

    def save(self, folder: str | Path) -> None:
        """Writes the tokenizer files Hugging Face AutoTokenizer loads, as the backbone had them."""
        folder = Path(folder)
        copied = False
        for name in TOKENIZER_FILES:
            if (self.folder / name).is_file():
                shutil.copyfile(self.folder / name, folder / name)
                copied = copied or name == "tokenizer.json"
        if not copied:
            self._tok.save(str(folder / "tokenizer.json"))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
