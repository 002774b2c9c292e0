"""finebert label: the project on disk, which text next, the HTTP API, the page driven by keyboard in headless
Chromium, and a kill -9 that loses no label."""

import json
import os
import signal
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from browser import CHROMIUM, Browser
from conftest import cli, sst2_rows, start_finebert, write_csv

LABELS = "negative,positive"


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> tuple[Path, list[str]]:
    """60 real SST-2 sentences, one per line, and their true labels (which the tool never reads)."""
    rows = sst2_rows(60)
    path = tmp_path_factory.mktemp("pool") / "pool.txt"
    path.write_text("".join(text + "\n" for text, _ in rows), encoding="utf-8")
    return path, ["positive" if label == "1" else "negative" for _, label in rows]


def start(project, *args):
    """`finebert label ... -o project` in a child process; (process, url) once it answers."""
    return start_finebert("label", *args, "-o", project, ready="/api/progress", tries=480)


def stop(proc):
    proc.terminate()
    proc.wait(timeout=30)


def journal(project: Path, name: str = "labels.jsonl") -> list[dict]:
    path = project / name
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


# -- which text next ------------------------------------------------------------------------------------------------
def test_spread_picks_one_text_of_each_cluster_before_a_second():
    from finebert.labelling.selection import spread

    rng = np.random.default_rng(0)
    centres = np.eye(8)[:4]  # four directions
    x = np.concatenate([c + 0.01 * rng.standard_normal((25, 8)) for c in centres])  # 4 clusters of 25
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    picked = spread(x, np.arange(100), 4, np.random.default_rng(1))
    assert sorted(i // 25 for i in picked) == [0, 1, 2, 3]  # one per cluster, not near-duplicates


def test_choose_covers_unlabelled_clusters_with_their_uncertain_texts_and_seeks_the_rare_label():
    from finebert.labelling.selection import choose

    rng = np.random.default_rng(0)
    x = np.concatenate([c + 0.02 * rng.standard_normal((25, 8)) for c in np.eye(8)[:4]])  # 4 clusters of 25 rows
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    probs = np.tile([0.95, 0.05], (100, 1))
    undecided = [5, 30, 55, 80]  # one per cluster: the model cannot tell
    probs[undecided] = 0.5
    open_rows = np.arange(1, 100)  # row 0 (cluster 0) is labelled
    picked = choose(x, probs, open_rows, np.array([10, 10]), n=3, rng=rng)
    assert sorted(picked) == [30, 55, 80]  # the three clusters without a label, each its undecided text
    probs[70] = [0.2, 0.8]  # the likeliest text of label 1, which has few answers
    picked = choose(x, probs, open_rows, np.array([30, 3]), n=3, rng=np.random.default_rng(5))
    assert picked[0] == 70 and len(set(picked)) == 3
    ahead = choose(x, probs, open_rows, np.array([30, 3]), n=3, rng=np.random.default_rng(5), extra=5)
    assert ahead[:3] == picked and len(set(ahead)) == 8  # the reserve behind the batch leaves the batch as it was


def test_cold_start_shows_each_label_names_own_guess_first(pool, tmp_path):
    """Before any label: for each label the text the label name places nearest, then texts spread over the pool.
    The names' guess already beats chance on real reviews."""
    from finebert.labelling.project import Project
    from finebert.labelling.session import Session

    path, truth = pool
    session = Session(Project.open(tmp_path / "p", path, labels=["negative", "positive"], strategy="active"))
    first = session.queue[:2]
    guesses = session.probs.argmax(1)  # (60,)
    assert [guesses[i] for i in first] == [0, 1]
    assert np.mean([["negative", "positive"][g] == t for g, t in zip(guesses, truth)]) > 0.6
    assert len(set(session.queue)) == 32  # a batch of 8 and the reserve behind it
    session.project.close()


def test_the_random_strategy_shows_a_seeded_shuffle(pool, tmp_path):
    from finebert.labelling.project import Project
    from finebert.labelling.selection import shuffled
    from finebert.labelling.session import Session

    session = Session(Project.open(tmp_path / "p", pool[0], labels=["negative", "positive"], strategy="random", seed=3))
    shown = []
    for _ in range(10):
        item = session.next()
        shown.append(item["id"])
        session.answer(item["id"], pool[1][item["id"]])
        if session.refit_due():
            session.refresh()
    assert shown == shuffled(60, 3)[:10]
    session.project.close()


# -- the project on disk ------------------------------------------------------------------------------------------
def test_labels_undo_and_skips_are_on_disk_and_train_reads_the_labels_file(pool, tmp_path, tiny_backbone):
    from finebert.labelling.project import Project

    path, truth = pool
    project = Project.open(tmp_path / "p", path, labels=["negative", "positive"])
    for i in range(6):
        project.answer(i, truth[i])
    project.answer(6, None)  # a skip
    project.undo()  # takes back the skip
    project.undo()  # and the label before it
    project.answer(7, truth[7])
    assert [row["id"] for row in journal(project.folder)] == [0, 1, 2, 3, 4, 7]
    assert journal(project.folder, "skipped.jsonl") == []
    assert journal(project.folder)[-1] == {"text": project.texts[7], "label": truth[7], "id": 7, "at": 6}
    project.close()
    reopened = Project.open(tmp_path / "p")
    assert [(a.id, a.label) for a in reopened.answers] == [(i, truth[i]) for i in (0, 1, 2, 3, 4, 7)]
    reopened.close()
    model = tmp_path / "m"
    code, out, err = cli("train", tmp_path / "p" / "labels.jsonl", "-o", model, "--model", tiny_backbone,
                         "--epochs", "1", "--quiet")
    assert code == 0, err
    assert json.loads((model / "finebert.json").read_text())["label_space"]["names"] == ["negative", "positive"]


def test_a_line_cut_short_by_a_kill_is_dropped_and_the_rest_kept(pool, tmp_path):
    from finebert.labelling.project import Project

    project = Project.open(tmp_path / "p", pool[0], labels=["negative", "positive"])
    project.answer(0, "positive")
    project.close()
    with open(tmp_path / "p" / "labels.jsonl", "a") as f:
        f.write('{"text": "half a li')  # the process died mid-write, before it answered
    reopened = Project.open(tmp_path / "p")
    assert [a.id for a in reopened.answers] == [0]
    assert (tmp_path / "p" / "labels.jsonl").read_text().count("\n") == 1
    reopened.close()


@pytest.mark.parametrize("case", ["empty pool", "other labels", "labels file disagrees", "seed label unknown",
                                  "no labels", "one label"])
def test_bad_input_is_one_line_exit_2_and_the_labels_untouched(case, pool, tmp_path):
    project = tmp_path / "p"
    args = [pool[0], "--labels", LABELS]
    if case == "empty pool":
        (tmp_path / "empty.txt").write_text("\n\n")
        args = [tmp_path / "empty.txt", "--labels", LABELS]
        expected = "the pool is empty"
    elif case in ("other labels", "labels file disagrees"):
        from finebert.labelling.project import Project

        Project.open(project, pool[0], labels=["negative", "positive"]).answer(0, "negative")
        if case == "other labels":
            args = ["--labels", "bad,good"]
            expected = "the project's labels are negative,positive, not bad,good"
        else:
            with open(project / "labels.jsonl", "a") as f:
                f.write(json.dumps({"text": "x", "label": "neutral", "id": 1, "at": 2}) + "\n")
            args = []
            expected = "labels.jsonl: line 2 has the label \"neutral\", which is not one of the project's labels"
    elif case == "seed label unknown":
        seed = write_csv(tmp_path / "seed.csv", ["text", "label"], [["fine", "positive"], ["meh", "neutral"]])
        args += ["--seed-data", seed]
        expected = "seed.csv: row 2 has the label \"neutral\""
    elif case == "no labels":
        args = [pool[0]]
        expected = "give the labels to choose from"
    else:
        args = [pool[0], "--labels", "positive"]
        expected = "a classifier needs at least two"
    before = (project / "labels.jsonl").read_bytes() if (project / "labels.jsonl").exists() else None
    code, out, err = cli("label", *args, "-o", project)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert expected in err, err
    after = (project / "labels.jsonl").read_bytes() if (project / "labels.jsonl").exists() else None
    assert after == before


# -- the HTTP API -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(pool, tmp_path_factory):
    """The labelling app in process (FastAPI's TestClient: the real app and routes), the fast head only."""
    from fastapi.testclient import TestClient

    from finebert.labelling.project import Project
    from finebert.labelling.server import create_app
    from finebert.labelling.session import Session

    project = Project.open(tmp_path_factory.mktemp("api") / "p", pool[0], labels=["negative", "positive"])
    with TestClient(create_app(Session(project), api_key="k", fine_tune=False), headers={"X-API-Key": "k"}) as c:
        yield c
    project.close()


def test_the_api_labels_undoes_and_reports_progress(client, pool):
    truth = pool[1]
    for _ in range(12):
        item = client.get("/api/next").json()
        assert set(item) == {"id", "text", "guess", "confidence"} and item["text"] == pool[0].read_text().splitlines()[item["id"]]
        answer = client.post("/api/labels", json={"id": item["id"], "label": truth[item["id"]]})
        assert answer.status_code == 200
    shown = answer.json()["next"]["id"]
    given = [a.id for a in client.app.state.service.session.project.labelled()]
    undone = client.delete("/api/labels/last").json()
    assert undone["undone"]["id"] == item["id"] and undone["next"]["id"] == item["id"]  # shown again
    again = client.post("/api/labels", json={"id": item["id"], "label": truth[item["id"]]}).json()
    assert again["next"]["id"] == shown  # the queue goes on where it was
    for _ in range(100):  # the teacher thread refits in the background
        progress = client.get("/api/progress").json()
        if progress["curve"] and progress["curve"][-1][0] == 12:
            break
        time.sleep(0.1)
    assert progress["labelled"] == 12
    assert progress["per_label"] == {name: sum(truth[i] == name for i in given) for name in ("negative", "positive")}
    assert progress["curve"][-1] == [12, round(progress["estimated_accuracy"], 4)] and 0 <= progress["estimated_accuracy"] <= 1
    assert set(client.app.openapi()["paths"]) == {"/api/next", "/api/labels", "/api/labels/last", "/api/progress"}


@pytest.mark.parametrize("method,path,body,status,says", [
    ("post", "/api/labels", {"id": 0, "label": "neutral"}, 422, "is not one of negative, positive"),
    ("post", "/api/labels", {"id": 10_000, "label": "positive"}, 422, "is not a row of the pool"),
    ("post", "/api/labels", {"label": "positive"}, 422, "id: Field required"),
    ("post", "/api/labels", {"id": 1, "label": ["negative", "positive"]}, 422, "is not one of"),
    ("post", "/api/labels", b"\xff\xfe", 400, "not valid UTF-8"),
    ("get", "/api/nope", None, 404, "Not Found"),
])
def test_the_api_refuses_bad_requests_with_4xx(client, method, path, body, status, says):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}
    response = client.request(method.upper(), path, **kwargs)
    assert response.status_code == status and says in response.json()["error"], response.text


def test_the_api_refuses_a_second_answer_and_a_missing_key(client):
    item = client.get("/api/next").json()
    assert client.post("/api/labels", json={"id": item["id"], "label": "positive"}).status_code == 200
    again = client.post("/api/labels", json={"id": item["id"], "label": "negative"})
    assert again.status_code == 409 and "answered already" in again.json()["error"]
    assert client.get("/api/next", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/").status_code == 200  # the page itself asks for the key


def test_multi_label_answers_are_lists(pool, tmp_path):
    from fastapi.testclient import TestClient

    from finebert.labelling.project import Project
    from finebert.labelling.server import create_app
    from finebert.labelling.session import Session

    project = Project.open(tmp_path / "p", pool[0], labels=["acting", "plot", "music"], multi_label=True)
    with TestClient(create_app(Session(project), fine_tune=False)) as c:
        item = c.get("/api/next").json()
        assert isinstance(item["guess"], list)
        assert c.post("/api/labels", json={"id": item["id"], "label": ["plot", "acting"]}).status_code == 200
        assert c.post("/api/labels", json={"id": 1, "label": "plot"}).status_code == 422  # a list is needed
        assert c.post("/api/labels", json={"id": 1, "label": []}).status_code == 422
    assert journal(project.folder)[0]["label"] == ["acting", "plot"]  # in the project's order
    project.close()


# -- the page, the process, the model -----------------------------------------------------------------------------
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed (.ci/run installs it)")
def test_the_page_labels_ten_texts_by_keyboard(pool, tmp_path):
    path, truth = pool
    proc, url = start(tmp_path / "p", path, "--labels", LABELS, "--no-fine-tune")
    try:
        with Browser(url + "/") as page:
            page.wait("document.body.dataset.state === 'ready'")
            given = []
            for n in range(10):
                shown = int(page.evaluate("document.body.dataset.shown"))
                label = truth[shown]
                page.press("1" if label == "negative" else "2")
                page.wait(f"document.body.dataset.shown !== '{shown}'")
                given.append((shown, label))
            page.press("s")  # a skip ...
            page.wait("document.querySelector('#counts').innerText.includes('1 skipped')")
            page.press("Backspace")  # ... taken back
            page.wait("document.querySelector('#counts').innerText.includes('0 skipped')")
            timings = page.evaluate("window.finebertTimings")
        assert [(row["id"], row["label"]) for row in journal(tmp_path / "p")] == given
        assert journal(tmp_path / "p", "skipped.jsonl") == []
        assert len(timings) == 12 and all(t > 0 for t in timings)
    finally:
        stop(proc)


def test_kill_9_mid_session_loses_no_label_and_resumes_the_queue(pool, tmp_path):
    path, truth = pool
    project = tmp_path / "p"
    proc, url = start(project, path, "--labels", LABELS, "--no-fine-tune")
    given = []
    for _ in range(9):
        item = httpx.get(url + "/api/next").json()
        assert httpx.post(url + "/api/labels", json={"id": item["id"], "label": truth[item["id"]]}).status_code == 200
        given.append(item["id"])
    time.sleep(1.5)  # the teacher refits and saves the queue
    waiting = httpx.get(url + "/api/next").json()["id"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc, url = start(project)  # the same project, no other argument
    try:
        assert [row["id"] for row in journal(project)] == given
        assert httpx.get(url + "/api/next").json()["id"] == waiting
        assert httpx.get(url + "/api/progress").json()["labelled"] == 9
    finally:
        stop(proc)


@pytest.mark.slow
def test_the_model_trains_in_the_background_and_is_an_ordinary_folder(pool, tmp_path, tiny_backbone):
    """At 32 labels a fine-tune starts in a process of its own; the page keeps answering meanwhile, and
    PROJECT/model/ then loads as any model folder. A second label process on the same project is refused."""
    from finebert.inference import Classifier

    path, truth = pool
    project = tmp_path / "p"
    proc, url = start(project, path, "--labels", LABELS, "--model", tiny_backbone)
    try:
        for _ in range(32):
            item = httpx.get(url + "/api/next").json()
            httpx.post(url + "/api/labels", json={"id": item["id"], "label": truth[item["id"]]})
        code, out, err = cli("label", "-o", project)
        assert code == 2 and "another finebert label has this project open" in err
        for _ in range(600):
            progress = httpx.get(url + "/api/progress", timeout=5).json()
            if progress["model"]:
                break
            time.sleep(0.5)
        assert progress["model"]["labels"] == 32 and progress["model_error"] is None
        clf = Classifier.load(project / "model")
        assert clf.labels == ["negative", "positive"]
    finally:
        stop(proc)


def test_seed_data_starts_the_labels_and_cannot_be_undone(pool, tmp_path):
    from finebert.labelling.project import Project
    from finebert.labelling.session import Session

    seed = write_csv(tmp_path / "seed.csv", ["review", "sentiment"],
                     [["a wonderful, moving film", "positive"], ["dull and far too long", "negative"]])
    project = Project.open(tmp_path / "p", pool[0], seed_data=seed)  # the labels: those of the seed file
    assert project.settings.labels == ["negative", "positive"]
    assert [(row["id"], row["label"]) for row in journal(project.folder)] == [(None, "positive"), (None, "negative")]
    session = Session(project)
    index, y = session._targets()
    assert len(index) == 2 and sorted(y.argmax(1)) == [0, 1]  # the seed rows train the head
    assert session.undo() is None and len(journal(project.folder)) == 2
    project.close()
