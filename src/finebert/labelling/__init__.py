"""Labelling: from a pile of unlabelled texts to a trained model, labelling only what the model needs.

The rooms, in the order a session uses them (imports point down this list, never up):

    server.py     the HTTP API and the page (label.html), the teacher thread, the fine-tune process (worker.py)
    session.py    the queue, the answers, the fast head on cached vectors, the fine-tune schedule
    selection.py  which texts next: the label names' guess, uncertain and diverse texts, rare labels sought out
    project.py    the project folder: project.json, labels.jsonl (what `finebert train` reads), the saved queue

    finebert label pool.txt -o project/ --labels negative,positive     # the page at http://127.0.0.1:8000/
"""
