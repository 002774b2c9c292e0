import numpy as np
import pytest

import finebert
from finebert.errors import DataError, ModelError
from finebert.training import bucketed_batches, within_noise


def test_loss_falls_while_fine_tuning_the_real_backbone():
    losses = []
    clf = finebert.train(None, epochs=12, warmup_ratio=0.0, quiet=True,
                         on_step=lambda step, loss: losses.append(loss))
    assert len(losses) == 12
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])
    assert clf.predict("The movie was absolutely fantastic!") == "positive"


def test_every_weight_is_fine_tuned():
    import torch

    from finebert.config import DEFAULT_BACKBONE, resolve_backbone
    from finebert.model import build_model

    torch.manual_seed(0)
    before = build_model(resolve_backbone(DEFAULT_BACKBONE), 2, pooling="cls", dropout=0.1).state_dict()
    after = finebert.train(None, epochs=1, quiet=True, seed=0).engine.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "encoder.embeddings.word_embeddings.weight" in changed
    assert "encoder.encoder.layer.0.attention.self.query.weight" in changed
    assert "head.weight" in changed


def test_same_seed_same_model_different_seed_different_model():
    a = finebert.train(None, epochs=2, quiet=True, seed=3).predict_proba("great")
    b = finebert.train(None, epochs=2, quiet=True, seed=3).predict_proba("great")
    c = finebert.train(None, epochs=2, quiet=True, seed=4).predict_proba("great")
    assert np.allclose(a, b, atol=1e-6) and not np.allclose(a, c, atol=1e-6)


def test_bucketed_batches_cover_everything_once_with_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 120, size=5000)
    spreads = {}
    for window in (1, 4, 50):
        batches = bucketed_batches(lengths, 32, np.random.default_rng(0), window)
        assert sorted(np.concatenate(batches).tolist()) == list(range(5000))
        spreads[window] = np.mean([np.ptp(lengths[b]) for b in batches])  # tokens between shortest and longest
    assert spreads[1] > 100  # plain random batches
    assert spreads[4] < 40  # a quarter of the range: far less padding, batches still varied
    assert spreads[50] < 5
    first = bucketed_batches(lengths, 32, np.random.default_rng(1), 4)[0]
    assert first.tolist() != bucketed_batches(lengths, 32, np.random.default_rng(0), 4)[0].tolist()


def test_validation_split_and_best_epoch_recorded(reviews_csv):
    clf = finebert.train(reviews_csv, epochs=2, batch_size=32, quiet=True, validation_split=0.2, max_length=32)
    assert [h["epoch"] for h in clf.history] == [1, 2]
    scores = [h["val_accuracy"] for h in clf.history]
    kept = max(e for e, s in enumerate(scores, 1) if within_noise(s, max(scores), 80))  # the latest alike with the best
    assert clf.metrics["best_epoch"] == kept
    assert clf.metrics["val_accuracy"] == scores[kept - 1]
    assert clf.metrics["val_examples"] == 80


def test_epochs_alike_within_validation_noise():
    """One standard error of 90% on 600 rows is 1.22 points; on 100,000 rows, 0.09."""
    assert within_noise(0.89, 0.90, 600) and within_noise(0.8878, 0.90, 600)
    assert not within_noise(0.8877, 0.90, 600) and not within_noise(0.70, 0.90, 600)
    assert not within_noise(0.89, 0.90, 100_000) and within_noise(0.8992, 0.90, 100_000)
    assert within_noise(1.0, 1.0, 50) and not within_noise(0.99, 1.0, 50)  # no noise in a perfect score


def test_max_time_stops_early_and_keeps_a_model(reviews_csv):
    clf = finebert.train(reviews_csv, epochs=5, batch_size=8, quiet=True, max_time=1.0, max_length=32)
    assert clf.history[-1]["stopped"] == "max_time"
    assert clf.history[-1]["step"] < 5 * 45
    assert clf.predict("wonderful") in ("negative", "positive")


def test_one_class_and_foreign_validation_labels_are_refused(tmp_path, reviews_csv):
    one = tmp_path / "one.csv"
    one.write_text("text,label\ngood,pos\nfine,pos\n")
    with pytest.raises(DataError, match="every row has the label 'pos'; a classifier needs at least two classes"):
        finebert.train(one, quiet=True)
    other = tmp_path / "other.csv"
    other.write_text("review,sentiment\ngood,great\nbad,negative\n")
    with pytest.raises(DataError, match=r"other.csv: row 1 has the label 'great', which the model does not know"):
        finebert.train(reviews_csv, validation=other, quiet=True)


def test_output_folder_that_is_not_ours_is_refused_before_training(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ModelError, match="exists and is not a finebert model folder"):
        finebert.train(None, output=tmp_path, quiet=True)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_real_sst2_model_reaches_useful_accuracy(sst2_model):
    """3,000 real SST-2 rows, one epoch: the dev accuracy a user should see from a small run."""
    from conftest import DATA
    from finebert.data import read_dataset

    # measured 0.8062 (chance: 0.51); 8,000 rows gave 0.8452, the HF Trainer 0.833-0.844 (run_glue recipe)
    assert finebert.evaluate(sst2_model, read_dataset(DATA / "sst2" / "dev.tsv")).accuracy >= 0.78


def test_unknown_setting_is_a_config_error():
    from finebert.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown setting 'epoch'"):
        finebert.train(None, epoch=3, quiet=True)


def test_our_adamw_and_its_schedule_do_what_torch_optim_and_lambda_lr_do():
    """training.AdamW calls torch's fused kernel without torch.optim's classes: the same weights after 6 steps of
    warmup and decay, with two groups (weight decay on one), and again after a save and load mid-way."""
    import torch
    from torch.optim.lr_scheduler import LambdaLR

    from finebert.training import AdamW

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))

    def groups(m):
        return [{"params": [m[0].weight, m[2].weight], "lr": 1e-2, "weight_decay": 0.1},
                {"params": [m[0].bias, m[2].bias], "lr": 3e-2, "weight_decay": 0.0}]

    def loss(m, i):
        x = torch.randn(32, 8, generator=torch.Generator().manual_seed(i))
        return m(x).pow(2).mean()

    ours, theirs = model(), model()
    optimizer = AdamW(groups(ours), warmup=2, total=6)
    reference = torch.optim.AdamW(groups(theirs), fused=True)
    schedule = LambdaLR(reference, lambda s: s / 2 if s < 2 else max(0.0, (6 - s) / 4))
    for i in range(6):
        loss(ours, i).backward()
        optimizer.step()
        ours.zero_grad(set_to_none=True)
        loss(theirs, i).backward()
        reference.step()
        schedule.step()
        reference.zero_grad(set_to_none=True)
        if i == 2:  # a checkpoint: what a resumed run loads
            tensors, state = optimizer.state_dict()
            optimizer = AdamW(groups(ours), warmup=2, total=6)
            optimizer.load_state_dict(tensors, state)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(a, b, atol=1e-7), (a, b)
    assert not torch.allclose(ours[0].weight, model()[0].weight, atol=1e-3)  # it did train


def test_adamw_makes_each_parameters_moments_once(monkeypatch):
    """The moments are zeros made at a parameter's first step; later steps make none (a step that built them and
    threw them away zero-filled twice the model's size each time: bf16 training took a fifth longer)."""
    import torch

    from finebert.training import AdamW

    model = torch.nn.Linear(8, 3)
    optimizer = AdamW([{"params": list(model.parameters()), "lr": 1e-2, "weight_decay": 0.0}], warmup=0, total=3)
    made = []
    real = torch.zeros_like
    monkeypatch.setattr(torch, "zeros_like", lambda *a, **k: made.append(a[0].shape) or real(*a, **k))
    for step in range(3):
        model(torch.randn(4, 8)).sum().backward()
        optimizer.step()
        model.zero_grad(set_to_none=True)
        if step == 0:
            assert len(made) == 4  # exp_avg and exp_avg_sq of the weight and of the bias
    assert len(made) == 4


@pytest.mark.parametrize("packing", [True, False])
def test_training_only_the_rows_used_gives_the_model_the_whole_table_gives(monkeypatch, packing):
    """UsedRows: the same weights as AdamW on the whole word-embedding table, rows never used included (weight
    decay alone moves those; here it is large, so that they do move), with a validation epoch in between."""
    import torch

    from conftest import sst2_rows
    from finebert.data import Dataset
    from finebert.training import TrainState

    rows = sst2_rows(80)
    data = Dataset([t for t, _ in rows], [y for _, y in rows], "sst2")
    kw = dict(epochs=2, batch_size=16, quiet=True, seed=0, precision="fp32", dropout=0.0, recipe="fine-tune",
              validation_split=0.2, weight_decay=50.0, layer_lr_decay=1.0, learning_rate=1e-3, packing=packing)
    used = finebert.train(data, **kw)
    monkeypatch.setattr(TrainState, "used_rows_only", False)
    whole = finebert.train(data, **kw)
    a, b = used.engine.model.state_dict(), whole.engine.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key
    assert used.metrics["val_accuracy"] == whole.metrics["val_accuracy"]
    # the rows no training text holds did move (so the comparison above covers the decay applied to them)
    from finebert.config import DEFAULT_BACKBONE, resolve_backbone
    from finebert.model import build_model

    pretrained = build_model(resolve_backbone(DEFAULT_BACKBONE), 2, pooling="cls", dropout=0.0).state_dict()
    key = "encoder.embeddings.word_embeddings.weight"
    unused = np.setdiff1d(np.arange(len(a[key])), np.concatenate(used.tokenizer.encode([t for t, _ in rows]).ids))
    assert a[key][unused].norm() < 0.99 * pretrained[key][unused].norm()


def test_recorded_validation_accuracy_is_that_of_the_returned_model(reviews_csv, tmp_path):
    """Validation runs without dropout, so it matches what the saved model scores on the same rows."""
    from conftest import sst2_rows
    from finebert.data import Dataset

    rows = sst2_rows(100, split="dev")
    val = Dataset([t for t, _ in rows], ["positive" if y == "1" else "negative" for _, y in rows], "dev")
    clf = finebert.train(reviews_csv, validation=val, epochs=1, quiet=True, max_length=32)
    assert clf.metrics["val_accuracy"] == finebert.evaluate(clf, val).accuracy


def test_dropout_setting_reaches_every_layer():
    """One `dropout` knob sets the encoder's dropout layers (attention included) and the head's."""
    import torch

    from finebert.config import DEFAULT_BACKBONE, resolve_backbone
    from finebert.model import build_model

    ids = torch.tensor([[101, 1996, 3185, 2001, 7078, 10392, 999, 102]])
    mask = torch.ones_like(ids)
    for rate in (0.0, 0.3):
        model = build_model(resolve_backbone(DEFAULT_BACKBONE), 2, pooling="cls", dropout=rate).train()
        rates = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
        assert rates == {rate}
        with torch.no_grad():
            same = torch.equal(model(ids, mask), model(ids, mask))
        assert same == (rate == 0.0)


@pytest.mark.parametrize("pooling", ["cls", "mean", "normalized-mean"])
def test_packed_batch_gives_each_text_the_logits_it_gets_alone(backbone, pooling):
    """Packing puts several short texts in one row, each attending only to itself: the logits are those of
    the padded batch (sentence pairs too, with their token types), so packing changes speed, not results."""
    import torch

    from conftest import sst2_rows
    from finebert.model import build_model
    from finebert.tokenization import Tokenizer

    tok = Tokenizer(backbone, 64)
    rows = sst2_rows(24, split="dev")
    firsts, seconds = [t for t, _ in rows[:12]], [t for t, _ in rows[12:]]
    single, pairs = tok.encode([t for t, _ in rows]), tok.encode(firsts, seconds)
    torch.manual_seed(0)
    model = build_model(backbone, 3, pooling=pooling, dropout=0.0).eval()
    for encoded in (single, pairs):
        ids, types = list(encoded.ids), encoded.type_ids
        packed = tok.pack(ids, types)
        assert max(len(set(row[row >= 0])) for row in packed["chunk_of_token"]) > 1  # a row holds several texts
        padded = {k: torch.from_numpy(v) for k, v in tok.pad(ids, types).items()}
        with torch.no_grad():
            alone = model(**padded)  # (B, 3)
            together = model(**{k: torch.from_numpy(v) for k, v in packed.items()})  # (B, 3)
        assert torch.allclose(alone, together, atol=1e-5), (alone - together).abs().max()


def test_cls_training_computes_the_last_layer_for_cls_alone_with_the_same_logits_and_gradients(backbone):
    """In training, a "cls" model's last layer computes only the [CLS] states it reads (model.BertEncoder's
    `only`): logits and every gradient equal the full computation's, for padded, packed and paired batches."""
    import torch

    from conftest import sst2_rows
    from finebert.model import build_model
    from finebert.tokenization import Tokenizer

    tok = Tokenizer(backbone, 64)
    rows = sst2_rows(24, split="dev")
    single, pairs = tok.encode([t for t, _ in rows]), tok.encode([t for t, _ in rows[:12]], [t for t, _ in rows[12:]])
    torch.manual_seed(0)
    model = build_model(backbone, 3, pooling="cls", dropout=0.0)
    target = torch.arange(24) % 3
    calls = []
    last = model.encoder.encoder["layer"][-1]
    last.register_forward_hook(lambda module, args, out: calls.append(tuple(out.shape)))
    for encoded in (single, pairs):
        for batch in (tok.pad(list(encoded.ids), encoded.type_ids), tok.pack(list(encoded.ids), encoded.type_ids)):
            batch = {k: torch.from_numpy(v) for k, v in batch.items()}
            results = []
            for training in (False, True):  # eval: every token's state, then [CLS] picked; train: [CLS] alone
                model.train(training)
                model.zero_grad()
                logits = model(**batch)  # (B, 3)
                torch.nn.functional.cross_entropy(logits, target[:len(logits)]).backward()
                results.append((logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
            (full, full_grads), (short, short_grads) = results
            assert calls[-1] == (len(full), model.encoder.config.hidden_size)  # the last layer made B states only
            assert torch.allclose(full, short, atol=1e-5), (full - short).abs().max()
            for name, grad in full_grads.items():
                assert torch.allclose(grad, short_grads[name], atol=1e-5, rtol=1e-4), name


def test_pack_places_every_token_once_with_positions_from_zero(backbone):
    from conftest import sst2_rows
    from finebert.tokenization import PACK_ROWS, PACK_WIDTH, Tokenizer

    tok = Tokenizer(backbone, 128)
    ids = list(tok.encode([t for t, _ in sst2_rows(32)]).ids)
    packed = tok.pack(ids)
    rows, width = packed["input_ids"].shape
    longest = max(len(s) for s in ids)
    assert width % PACK_WIDTH == 0 and longest <= width < longest + PACK_WIDTH
    assert rows % PACK_ROWS == 0
    flat_ids, flat_pos, chunk = (packed[k].reshape(-1) for k in ("input_ids", "position_ids", "chunk_of_token"))
    for i, seq in enumerate(ids):
        where = np.flatnonzero(chunk == i)
        assert flat_ids[where].tolist() == list(seq)  # all of it, in order, contiguous in one row
        assert flat_pos[where].tolist() == list(range(len(seq)))
        assert where[-1] - where[0] == len(seq) - 1 and where[0] // width == where[-1] // width
        assert packed["first_token"][i] == where[0] and flat_ids[where[0]] == tok.encode(["x"]).ids[0][0]  # [CLS]
    assert (chunk >= 0).sum() == sum(len(s) for s in ids)


def test_packed_batches_come_in_few_shapes(backbone):
    """bf16 kernels are compiled and cached per matrix shape: a new shape every step cost time and memory.
    Batches of 64 random SST-2 phrases of all lengths share a handful of packed shapes."""
    from conftest import sst2_rows
    from finebert.tokenization import Tokenizer

    tok = Tokenizer(backbone, 128)
    ids = list(tok.encode([t for t, _ in sst2_rows(3200)]).ids)
    order = np.random.default_rng(0).permutation(len(ids))
    shapes = {tok.pack([ids[i] for i in order[start:start + 64]])["input_ids"].shape for start in range(0, 3200, 64)}
    assert len(shapes) <= 4, sorted(shapes)  # 40 at exact sizes


def weights_changed_by_training(**settings) -> tuple[set, set]:
    """(every weight name, the names one epoch on the sample changed) with these settings."""
    import torch

    from finebert.config import DEFAULT_BACKBONE, resolve_backbone
    from finebert.model import build_model

    torch.manual_seed(0)
    before = build_model(resolve_backbone(DEFAULT_BACKBONE), 2, pooling="cls", dropout=0.1).state_dict()
    after = finebert.train(None, epochs=1, quiet=True, seed=0, **settings).engine.model.state_dict()
    return set(before), {k for k in before if not torch.equal(before[k], after[k])}


def test_frozen_word_embeddings_stay_as_loaded_while_the_rest_trains():
    _, changed = weights_changed_by_training(freeze_word_embeddings=True)
    assert "encoder.embeddings.word_embeddings.weight" not in changed
    assert {"encoder.embeddings.position_embeddings.weight", "encoder.encoder.layer.0.attention.self.query.weight",
            "head.weight"} <= changed


def test_frozen_layers_stay_as_loaded_and_the_layers_above_train():
    from finebert.errors import ConfigError

    names, changed = weights_changed_by_training(freeze_layers=2)
    frozen = {k for k in names if k.startswith(("encoder.embeddings.", "encoder.encoder.layer.0.",
                                                "encoder.encoder.layer.1."))}
    assert len(frozen) > 30 and not frozen & changed, sorted(frozen & changed)
    assert {"encoder.encoder.layer.2.attention.self.query.weight", "encoder.encoder.layer.5.output.dense.weight",
            "head.weight"} <= changed
    with pytest.raises(ConfigError, match="freeze_layers=6 .* use at most 5"):
        finebert.train(None, epochs=1, quiet=True, freeze_layers=6)


def test_training_with_and_without_packing_gives_the_same_model():
    """Without dropout (whose random masks take the batch's shape) the steps are the same."""
    from conftest import sst2_rows
    from finebert.data import Dataset

    rows = sst2_rows(64)  # phrases of 1 to 50 words: batches that pack
    data = Dataset([t for t, _ in rows], [y for _, y in rows], "sst2")
    kw = dict(epochs=1, batch_size=16, quiet=True, seed=0, precision="fp32", dropout=0.0, recipe="fine-tune",
              validation_split=0.0)
    texts = ["I really enjoyed the movie!", "a dull, lifeless film"]
    packed = finebert.train(data, packing=True, **kw).predict_proba(texts)
    padded = finebert.train(data, packing=False, **kw).predict_proba(texts)
    assert np.allclose(packed, padded, atol=1e-4), (packed, padded)


def test_cpu_held_to_avx2_trains_in_fp32():
    """bf16 autocast only where PyTorch runs AVX-512 kernels: ATEN_CPU_CAPABILITY=avx2 (an AVX2 CPU's view) says no."""
    import os
    import subprocess
    import sys

    probe = "import torch; from finebert.model import bf16_supported; print(bf16_supported(torch.device('cpu')))"
    env = dict(os.environ, ATEN_CPU_CAPABILITY="avx2")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _hf_encoder(folder):
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()


def test_our_bert_encoder_computes_what_transformers_computes(backbone, tmp_path):
    """Training builds BERT backbones as model.BertEncoder: padded, paired and packed batches give transformers'
    hidden states, for the default backbone and for a BertForMaskedLM checkpoint (keys under "bert.", a "cls." head)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from conftest import sst2_rows
    from finebert.model import BertEncoder, additive_mask, build_model
    from finebert.tokenization import Tokenizer

    torch.manual_seed(0)
    masked_lm = tmp_path / "bert-mlm"
    BertForMaskedLM(BertConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
                               max_position_embeddings=128)).save_pretrained(masked_lm)
    tok = Tokenizer(backbone, 64)
    rows = [t for t, _ in sst2_rows(16, split="dev")]
    for folder in (backbone, masked_lm):
        ours = build_model(folder, 2, pooling="cls", dropout=0.0).eval().encoder
        theirs = _hf_encoder(folder)
        assert isinstance(ours, BertEncoder) and ours.state_dict().keys() <= theirs.state_dict().keys()
        for encoded in (tok.encode(rows), tok.encode(rows[:8], rows[8:])):
            padded = {k: torch.from_numpy(v) for k, v in tok.pad(list(encoded.ids), encoded.type_ids).items()}
            packed = {k: torch.from_numpy(v) for k, v in tok.pack(list(encoded.ids), encoded.type_ids).items()}
            chunk = packed["chunk_of_token"]
            mask4d = additive_mask(chunk[:, None, :, None] == chunk[:, None, None, :])  # (R, 1, T, T)
            real = padded["attention_mask"].bool()
            with torch.no_grad():
                a = ours(padded["input_ids"], padded["attention_mask"], padded["token_type_ids"])  # (B, T, H)
                b = theirs(**padded).last_hidden_state
                assert torch.allclose(a[real], b[real], atol=1e-5), (a[real] - b[real]).abs().max()
                a = ours(packed["input_ids"], mask4d, packed["token_type_ids"], packed["position_ids"])
                b = theirs(input_ids=packed["input_ids"], attention_mask=mask4d, token_type_ids=packed["token_type_ids"],
                           position_ids=packed["position_ids"]).last_hidden_state
                assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_bert_variants_our_encoder_does_not_cover_load_through_transformers(tmp_path, backbone, reviews_csv):
    import torch
    from transformers import BertConfig, BertModel

    from finebert.model import BertEncoder, build_model

    odd = tmp_path / "gelu-new-bert"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         hidden_act="gelu_new")).save_pretrained(odd)
    (odd / "vocab.txt").write_bytes((backbone / "vocab.txt").read_bytes())
    model = build_model(odd, 2, pooling="cls", dropout=0.0).eval()
    assert isinstance(model.encoder, BertModel) and not isinstance(model.encoder, BertEncoder)
    ids = torch.tensor([[101, 1996, 3185, 102]])
    with torch.no_grad():
        assert torch.allclose(model.encoder(input_ids=ids).last_hidden_state, _hf_encoder(odd)(input_ids=ids).last_hidden_state)
    trained = finebert.train(reviews_csv, model=str(odd), epochs=0.5, quiet=True).engine.model.encoder
    assert isinstance(trained, BertModel)


@pytest.mark.parametrize("recipe", ["fine-tune", "head-first"])
def test_training_a_bert_backbone_never_imports_transformers_or_torch_dynamo(recipe):
    """transformers' model classes take 3.6 s to import, and torch._dynamo (which torch.optim's classes import on
    first use) 1.5 s; a training process of our own BERT needs neither."""
    import subprocess
    import sys

    probe = (f"import sys, finebert; finebert.train(None, epochs=1, quiet=True, recipe='{recipe}'); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'transformers' or m.startswith('torch._dynamo')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("family", ["bert", "roberta"])  # packed batches (our encoder), padded ones (transformers)
def test_long_texts_trained_in_parts_give_the_model_one_pass_gives(families, monkeypatch, tmp_path, family):
    """A batch of long texts in many windows is trained part by part (loop.backward_in_parts): the same weights as
    one pass over the whole batch, to float rounding (without dropout, whose masks are drawn per part)."""
    import torch

    from conftest import subset_file
    from finebert.training import loop

    data = subset_file(tmp_path, "imdb/train.csv", 24)
    kw = dict(long_text="window", max_length=32, stride=8, epochs=1, batch_size=8, precision="fp32", dropout=0.0,
              recipe="fine-tune", quiet=True, model=str(families[family]), seed=1)
    monkeypatch.setattr(loop, "STEP_TOKENS", 10**9)
    whole = finebert.train(data, **kw)  # one pass per batch, however many windows
    counts, step_parts = [], loop.step_parts
    monkeypatch.setattr(loop, "STEP_TOKENS", 200)  # about six windows of 32 tokens a part
    monkeypatch.setattr(loop, "step_parts", lambda lengths: counts.append(len(parts := step_parts(lengths))) or parts)
    in_parts = finebert.train(data, **kw)
    assert min(counts) > 1  # every batch was trained in parts
    a, b = whole.engine.model.state_dict(), in_parts.engine.model.state_dict()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key


def test_a_training_pass_takes_16_windows_of_128_tokens_or_4096_tokens_of_short_texts():
    from finebert.training.loop import step_parts

    assert step_parts(np.full(16, 128)) == [slice(0, 16)]
    assert step_parts(np.full(17, 128)) == [slice(0, 16), slice(16, 17)]
    assert step_parts(np.full(200, 20)) == [slice(0, 200)]  # a batch of short texts: one pass
    assert step_parts(np.full(300, 20)) == [slice(0, 204), slice(204, 300)]  # ... up to 4,096 tokens
    assert len(step_parts(np.full(9, 512))) == 9  # one window of 512 a pass: attention grows with the square
