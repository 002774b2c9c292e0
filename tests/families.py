"""Tiny randomly initialised backbones of every family finebert supports, built in the test session (no download):
2 layers, 32 wide, with a tokenizer trained on a few hundred real sentences by `tokenizers`, of the kind the
family uses (WordPiece, byte-level BPE or Unigram), saved as transformers saves a real model folder."""

from pathlib import Path

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
             max_position_embeddings=160)
BERT_TOKENS = ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]")
ROBERTA_TOKENS = ("<s>", "</s>", "<pad>", "<unk>", "<mask>")


def _template(tok, cls: str, sep: str):
    from tokenizers import processors

    c, s = tok.token_to_id(cls), tok.token_to_id(sep)
    return processors.TemplateProcessing(single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
                                         special_tokens=[(cls, c), (sep, s)])


def wordpiece(texts, tokens):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    cls, sep, pad, unk, mask = tokens
    tok = Tokenizer(models.WordPiece(unk_token=unk))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=500, special_tokens=[pad, unk, cls, sep, mask]))
    tok.post_processor, tok.decoder = _template(tok, cls, sep), decoders.WordPiece()
    return tok


def byte_bpe(texts, tokens):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    cls, sep, pad, unk, mask = tokens
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=500, special_tokens=[cls, pad, sep, unk, mask],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if cls == "<s>":  # RoBERTa's own pair layout: <s> a </s></s> b </s>
        tok.post_processor = processors.RobertaProcessing((sep, tok.token_to_id(sep)), (cls, tok.token_to_id(cls)))
    else:
        tok.post_processor = _template(tok, cls, sep)
    tok.decoder = decoders.ByteLevel()
    return tok


def unigram(texts, tokens):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    cls, sep, pad, unk, mask = tokens
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=500, special_tokens=[pad, cls, sep, unk, mask],
                                                           unk_token=unk))
    tok.post_processor, tok.decoder = _template(tok, cls, sep), decoders.Metaspace()
    return tok


# family -> (transformers config class name, tokenizer maker, its special tokens, config settings beyond SMALL)
FAMILIES = {
    "bert": ("BertConfig", wordpiece, BERT_TOKENS, {}),
    "distilbert": ("DistilBertConfig", wordpiece, BERT_TOKENS,
                   dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=160)),
    "roberta": ("RobertaConfig", byte_bpe, ROBERTA_TOKENS, dict(type_vocab_size=1)),
    "mpnet": ("MPNetConfig", wordpiece, ("<s>", "</s>", "<pad>", "[UNK]", "<mask>"), {}),
    "deberta-v2": ("DebertaV2Config", unigram, BERT_TOKENS,
                   dict(type_vocab_size=0, relative_attention=True, pos_att_type=["p2c", "c2p"],
                        position_biased_input=False, position_buckets=32)),
    "electra": ("ElectraConfig", wordpiece, BERT_TOKENS, dict(embedding_size=32)),
    "modernbert": ("ModernBertConfig", byte_bpe, BERT_TOKENS, dict(global_attn_every_n_layers=1, local_attention=16)),
}


def build(family: str, folder: Path, texts: list[str]) -> Path:
    """A tiny `family` backbone in `folder`: config.json, model.safetensors, tokenizer.json, tokenizer_config.json."""
    import torch
    import transformers
    from transformers import AutoModel, PreTrainedTokenizerFast

    config_class, make_tokenizer, tokens, extra = FAMILIES[family]
    tok = make_tokenizer(texts, tokens)
    cls, sep, pad, unk, mask = tokens
    ids = dict(pad_token_id=tok.token_to_id(pad), cls_token_id=tok.token_to_id(cls), sep_token_id=tok.token_to_id(sep))
    settings = ({} if family == "distilbert" else SMALL) | extra | ids | dict(
        vocab_size=tok.get_vocab_size(), bos_token_id=ids["cls_token_id"], eos_token_id=ids["sep_token_id"])
    torch.manual_seed(0)
    AutoModel.from_config(getattr(transformers, config_class)(**settings)).save_pretrained(folder)
    PreTrainedTokenizerFast(tokenizer_object=tok, cls_token=cls, sep_token=sep, pad_token=pad, unk_token=unk,
                            mask_token=mask, model_max_length=160).save_pretrained(folder)
    return folder
