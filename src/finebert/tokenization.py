"""Stage 2, tokenization: Hugging Face `tokenizers` WordPiece from the backbone's own files.

    [CLS] the movie was absolutely fantastic ! [SEP]  ->  101 1996 3185 2001 7078 10392 999 102

Texts are encoded once, in batch, by the Rust tokenizer, truncated but not padded; batches are padded
later to their own longest text (dynamic padding), with attention mask 1 for tokens and 0 for padding.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finebert.errors import ConfigError, ModelError

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
LONG_TEXT = ("truncate", "head-tail", "window")
# Packed batches come in few shapes: rows a multiple of PACK_WIDTH tokens wide (the longest text rounded up), their
# number a multiple of PACK_ROWS. In bf16, oneDNN compiles and caches kernels for each new matrix shape: with a shape
# per batch (181 in an epoch of full SST-2; 19 with this rounding), training spent time compiling and its memory grew.
# Full SST-2 at batch 64, bf16: 22-43% less time per step, peak RSS 2.70-2.96 -> 1.53-1.54 GB after 300-400 steps.
# Wider rows also pack tighter (17% padding -> 11%): fp32 steps held to AVX2 4-5% faster (benchmarks/RESULTS.md).
PACK_WIDTH, PACK_ROWS = 32, 2


@dataclass
class Encoded:
    """Model inputs for N texts: the token ids of one or more chunks per text, not padded.

    A text is one chunk unless `window` splits it; chunks of text d are chunks[starts[d]:starts[d + 1]].
    """

    ids: list[list[int]]  # per chunk: [CLS] ... [SEP] (pairs: [CLS] a [SEP] b [SEP])
    type_ids: list[list[int]] | None  # per chunk: segment ids of sentence pairs; None means all 0
    starts: np.ndarray  # (N + 1,) offsets of each text's chunks

    @property
    def n_docs(self) -> int:
        return len(self.starts) - 1

    def doc_of_chunk(self) -> np.ndarray:
        """(n_chunks,) the text each chunk belongs to."""
        return np.repeat(np.arange(self.n_docs), np.diff(self.starts))

    def chunk_lengths(self) -> np.ndarray:
        """(n_chunks,) tokens per chunk: what scoring batches by length sort on (engines.length_batches)."""
        return np.array([len(c) for c in self.ids], dtype=np.int64)

    def doc_lengths(self) -> np.ndarray:
        """(N,) tokens per text over all its chunks: what batching by length sorts on."""
        chunk_lengths = self.chunk_lengths()
        return np.add.reduceat(chunk_lengths, self.starts[:-1]) if len(chunk_lengths) else chunk_lengths

    def select(self, docs) -> "Encoded":
        """The chunks of texts `docs`, in that order, renumbered from 0."""
        pieces = [range(self.starts[d], self.starts[d + 1]) for d in docs]
        chunks = [c for piece in pieces for c in piece]
        type_ids = None if self.type_ids is None else [self.type_ids[c] for c in chunks]
        starts = np.concatenate([[0], np.cumsum([len(p) for p in pieces])]).astype(np.int64)
        return Encoded([self.ids[c] for c in chunks], type_ids, starts)


class Tokenizer:
    """The backbone's WordPiece tokenizer; `max_length` tokens per chunk, [CLS] and [SEP] included."""

    def __init__(self, folder: str | Path, max_length: int = 128):
        from tokenizers import Tokenizer as RustTokenizer

        self.folder = Path(folder)
        if (self.folder / "tokenizer.json").is_file():
            load = lambda: RustTokenizer.from_file(str(self.folder / "tokenizer.json"))  # noqa: E731
        elif (self.folder / "vocab.txt").is_file():
            from tokenizers.implementations import BertWordPieceTokenizer

            settings = _read_json(self.folder / "tokenizer_config.json")
            lowercase = settings.get("do_lower_case", True)
            load = lambda: BertWordPieceTokenizer(str(self.folder / "vocab.txt"), lowercase=lowercase)._tokenizer  # noqa: E731
        else:
            raise ModelError(f"{self.folder}: no tokenizer.json or vocab.txt; the backbone folder needs its tokenizer files")
        self._tok = load()  # truncates to max_length: the fast path
        self._tok.no_padding()
        self._tok.enable_truncation(max_length)
        self._full = load()  # no truncation, no special tokens: for head-tail and window
        self._full.no_padding()
        self._full.no_truncation()
        self.max_length = max_length
        special = _read_json(self.folder / "special_tokens_map.json") | _read_json(self.folder / "tokenizer_config.json")
        token = lambda key, default: (special.get(key) or {}).get("content", default) \
            if isinstance(special.get(key), dict) else (special.get(key) or default)  # noqa: E731
        self.pad_token = token("pad_token", "[PAD]")
        self.pad_id = self._tok.token_to_id(self.pad_token) or 0
        self.cls_id = self._tok.token_to_id(token("cls_token", "[CLS]"))
        self.sep_id = self._tok.token_to_id(token("sep_token", "[SEP]"))

    def encode(self, texts: list[str], pairs: list[str] | None = None, *, long_text: str = "truncate",
               stride: int = 32) -> Encoded:
        """Token ids of `texts` (with `pairs`: [CLS] text [SEP] pair [SEP] and segment ids).

        Texts longer than max_length are truncated, cut to their head and tail (`head-tail`: the first
        quarter and the last three quarters of the room), or split into overlapping chunks (`window`:
        consecutive chunks share `stride` tokens).
        """
        if pairs is not None:
            if long_text != "truncate":
                raise ConfigError(f"long_text={long_text!r} works on single texts; sentence pairs are truncated "
                                  "(leave long_text as 'truncate')")
            encodings = self._tok.encode_batch(list(zip(texts, pairs)))
            return Encoded([e.ids for e in encodings], [e.type_ids for e in encodings],
                           np.arange(len(texts) + 1, dtype=np.int64))
        if long_text == "truncate":
            ids = [e.ids for e in self._tok.encode_batch(texts)]
            return Encoded(ids, None, np.arange(len(texts) + 1, dtype=np.int64))
        chunks, counts = [], []
        for body in (e.ids for e in self._full.encode_batch(texts, add_special_tokens=False)):
            spans = self.spans(len(body), long_text, stride)
            chunks.extend([self.cls_id, *(body[i] for i in span), self.sep_id] for span in spans)
            counts.append(len(spans))
        return Encoded(chunks, None, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))

    def spans(self, n: int, long_text: str, stride: int) -> list[list[int]]:
        """Which of a text's n tokens each of its chunks holds: the one rule for truncate, head-tail and window."""
        room = self.max_length - 2  # tokens of text per chunk, between [CLS] and [SEP]
        if n <= room or long_text == "truncate":
            return [list(range(min(n, room)))]
        if long_text == "head-tail":
            head = room // 4
            return [list(range(head)) + list(range(n - (room - head), n))]
        return [list(range(s, min(s + room, n))) for s in range(0, n - stride, room - stride)]

    def words(self, text: str, pair: str | None = None) -> tuple[list[str], list[int | None], object]:
        """(words, the word of each token, the tokenizers Encoding) of one text, for explanations. Words are
        as written in the text (then a "[SEP]" and the pair's words). Tokens are those of the whole text, no
        special tokens and no truncation, as `spans` indexes them; for a pair, those of the model's
        encoding, specials included (their word is None)."""
        if pair is None:
            enc = self._full.encode(text, add_special_tokens=False)
            sequences = [0] * len(enc.ids)
        else:
            enc = self._tok.encode(text, pair)
            sequences = enc.sequence_ids
        bounds: dict[tuple, list[int]] = {}  # (sequence, word id) -> [start, end] in that sequence's string
        keys = []
        for sequence, word, (start, end) in zip(sequences, enc.word_ids, enc.offsets):
            key = None if sequence is None or word is None else (sequence, word)
            if key is not None:
                bounds.setdefault(key, [start, end])[1] = end
            keys.append(key)
        words, position = [], {}
        for key in bounds:  # in order of first appearance
            if key[0] == 1 and "[SEP]" not in words:
                words.append("[SEP]")
            position[key] = len(words)
            words.append((text, pair)[key[0]][bounds[key][0]:bounds[key][1]])
        return words, [None if key is None else position[key] for key in keys], enc

    def pad(self, ids: list[list[int]], type_ids: list[list[int]] | None = None) -> dict[str, np.ndarray]:
        """Pads chunks to the longest one: input_ids, attention_mask and token_type_ids, each (B, T) int64."""
        width = max(len(s) for s in ids)
        batch = {"input_ids": np.full((len(ids), width), self.pad_id, dtype=np.int64),  # (B, T)
                 "attention_mask": np.zeros((len(ids), width), dtype=np.int64),  # (B, T)
                 "token_type_ids": np.zeros((len(ids), width), dtype=np.int64)}  # (B, T)
        for row, seq in enumerate(ids):
            batch["input_ids"][row, :len(seq)] = seq
            batch["attention_mask"][row, :len(seq)] = 1
            if type_ids is not None:
                batch["token_type_ids"][row, :len(seq)] = type_ids[row]
        return batch

    def pack(self, ids: list[list[int]], type_ids: list[list[int]] | None = None) -> dict[str, np.ndarray]:
        """Packs chunks into as few rows as fit (longest first, each into the first row with room), so that short
        texts are not padded to a long one: input_ids, token_type_ids, position_ids (from 0 in each chunk) and
        chunk_of_token (-1 for padding), each (R, T), and first_token (B,): where each chunk's [CLS] lies in the
        flattened (R*T) rows. The model lets each token attend only to its own chunk, so every chunk gets the
        states it would get alone in a padded row. T is the longest chunk rounded up to a multiple of PACK_WIDTH,
        R a multiple of PACK_ROWS (a last row may be all padding)."""
        width = _round_up(max(len(s) for s in ids), PACK_WIDTH)
        room: list[int] = []  # free places left in each row
        place = np.zeros((len(ids), 2), dtype=np.int64)  # (B, 2): row and first column of each chunk
        for i in sorted(range(len(ids)), key=lambda i: -len(ids[i])):
            n = len(ids[i])
            row = next((r for r, free in enumerate(room) if free >= n), len(room))
            if row == len(room):
                room.append(width)
            place[i] = row, width - room[row]
            room[row] -= n
        shape = (_round_up(len(room), PACK_ROWS), width)
        batch = {"input_ids": np.full(shape, self.pad_id, dtype=np.int64),  # (R, T)
                 "token_type_ids": np.zeros(shape, dtype=np.int64),  # (R, T)
                 "position_ids": np.zeros(shape, dtype=np.int64),  # (R, T)
                 "chunk_of_token": np.full(shape, -1, dtype=np.int64)}  # (R, T)
        for i, (seq, (row, col)) in enumerate(zip(ids, place)):
            span = slice(col, col + len(seq))
            batch["input_ids"][row, span] = seq
            batch["position_ids"][row, span] = np.arange(len(seq))
            batch["chunk_of_token"][row, span] = i
            if type_ids is not None:
                batch["token_type_ids"][row, span] = type_ids[i]
        batch["first_token"] = place[:, 0] * width + place[:, 1]  # (B,)
        return batch

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


def _round_up(n: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is at least n."""
    return -(-n // multiple) * multiple


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
