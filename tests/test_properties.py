"""Property tests (hypothesis): the readers, the tokenizer wrapper and the HTTP request model on arbitrary
unicode and arbitrary JSON. Each either works and gives back what went in, or says why in a DataError
or a 4xx; nothing else escapes."""

import csv
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finebert.data import read_dataset
from finebert.errors import DataError

# Any unicode but lone surrogates (which no UTF-8 file can hold) and NUL (a binary file's mark).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=0, max_size=60)
LABEL = st.sampled_from(["positive", "negative", "0", "1", "spam", "ham", "joy, surprise", "é", "🙂"])
ROWS = st.lists(st.tuples(TEXT, LABEL), min_size=1, max_size=8)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def check_read(path, rows):
    try:
        data = read_dataset(path)
    except DataError as e:
        assert str(path) in str(e)  # names the file
        return
    assert len(data) == len(rows)
    for (text, label), got_text, got_label in zip(rows, data.texts, data.labels):
        assert got_text == text and got_label == label.strip()


@FAST
@given(ROWS)
def test_csv_round_trips_or_says_why(tmp_path, rows):
    path = tmp_path / "d.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    # csv.writer writes an empty first field as "", and a row that is one empty field as a blank line
    check_read(path, rows)


@FAST
@given(ROWS)
def test_jsonl_round_trips_or_says_why(tmp_path, rows):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows), encoding="utf-8")
    check_read(path, rows)


@FAST
@given(st.lists(st.tuples(TEXT.filter(lambda t: not set(t) & set("\t\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")),
                          LABEL), min_size=1, max_size=8))
def test_tsv_round_trips_or_says_why(tmp_path, rows):
    path = tmp_path / "d.tsv"
    path.write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
    check_read(path, rows)


@pytest.fixture(scope="module")
def tokenizer(backbone):
    from finebert.tokenization import Tokenizer

    return Tokenizer(backbone, max_length=24)


@settings(max_examples=120, deadline=None)
@given(TEXT, st.sampled_from(["truncate", "head-tail", "window"]), st.integers(0, 11))
def test_every_chunk_is_framed_and_within_length(tokenizer, text, long_text, stride):
    enc = tokenizer.encode([text], long_text=long_text, stride=stride)
    assert enc.n_docs == 1 and len(enc.ids) >= 1
    for chunk in enc.ids:
        assert chunk[0] == tokenizer.cls_id and chunk[-1] == tokenizer.sep_id and len(chunk) <= 24
        assert all(0 <= i < 30522 for i in chunk)
    if long_text == "window":  # the chunks, overlaps removed, are the whole text
        body = tokenizer._full.encode(text, add_special_tokens=False).ids
        rebuilt = enc.ids[0][1:-1] + [i for c in enc.ids[1:] for i in c[1 + stride:-1]]
        assert rebuilt == body


@settings(max_examples=60, deadline=None)
@given(TEXT, TEXT)
def test_pairs_have_segment_ids_zero_then_one(tokenizer, a, b):
    enc = tokenizer.encode([a], [b])
    ids, types = enc.ids[0], enc.type_ids[0]
    assert len(ids) == len(types) <= 24 and ids.count(tokenizer.sep_id) >= 2
    first_sep = ids.index(tokenizer.sep_id)
    assert set(types[:first_sep + 1]) == {0} and set(types[first_sep + 1:]) <= {1}


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=12)


@pytest.fixture(scope="module")
def client(trained):
    from fastapi.testclient import TestClient

    from finebert.serving import create_app

    with TestClient(create_app(trained[0])) as c:
        yield c


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(JSON, st.fixed_dictionaries({"texts": JSON}), st.fixed_dictionaries({"texts": st.lists(TEXT, max_size=5)})))
def test_any_json_body_gets_predictions_or_a_json_4xx(client, body):
    r = client.post("/predict", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code in (200, 413, 422), r.text
    answer = r.json()
    if r.status_code == 200:
        assert [p["text"] for p in answer["predictions"]] == body["texts"]
    else:
        assert isinstance(answer["error"], str) and answer["error"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_any_bytes_get_a_json_4xx(client, body):
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code in (200, 400, 422), r.text
    assert "predictions" in r.json() if r.status_code == 200 else r.json()["error"]
