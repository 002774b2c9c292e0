import json

from finebert.tokenization import Tokenizer

SEED = "The movie was absolutely fantastic!"


def test_seed_sentence_tokens_ids_and_mask(backbone):
    out = Tokenizer(backbone).explain(SEED)
    assert " ".join(out["tokens"]) == "[CLS] the movie was absolutely fantastic ! [SEP]"
    assert out["input_ids"] == [101, 1996, 3185, 2001, 7078, 10392, 999, 102]
    assert out["attention_mask"] == [1] * 8


def test_padding_to_max_length_masks_the_padding(backbone):
    out = Tokenizer(backbone).explain(SEED, pad_to=10)
    assert out["input_ids"][8:] == [0, 0]
    assert out["attention_mask"] == [1] * 8 + [0, 0]


def test_batch_encoding_truncates_and_pads_dynamically(backbone):
    tok = Tokenizer(backbone, max_length=6)
    seqs = tok.encode([SEED, "ok"]).ids
    assert seqs[0] == [101, 1996, 3185, 2001, 7078, 102]  # truncated, [SEP] kept
    batch = tok.pad(seqs)
    assert batch["input_ids"].shape == (2, 6) and batch["attention_mask"][1].tolist() == [1, 1, 1, 0, 0, 0]
    assert not batch["token_type_ids"].any()


def test_vocab_txt_only_folder_tokenizes_the_same(backbone, tmp_path):
    (tmp_path / "vocab.txt").write_bytes((backbone / "vocab.txt").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    assert Tokenizer(tmp_path).explain(SEED)["input_ids"] == [101, 1996, 3185, 2001, 7078, 10392, 999, 102]
