import finebert
from conftest import write_csv


def test_report_counts_and_metrics_agree(trained, tmp_path):
    clf, _ = trained
    rows = [["a delight from start to finish", "positive"], ["dreadful and boring", "negative"],
            ["one of the best films of the year", "positive"], ["a waste of time", "negative"]]
    path = write_csv(tmp_path / "eval.csv", ["review", "sentiment"], rows)
    report = finebert.evaluate(clf, path)
    matrix = report.confusion_matrix
    assert report.examples == 4 and sum(map(sum, matrix)) == 4
    assert report.accuracy == round((matrix[0][0] + matrix[1][1]) / 4, 4)
    assert set(report.per_class) == {"negative", "positive"}
    assert report.per_class["positive"]["support"] == 2


def test_unknown_label_names_the_file_and_the_known_labels(trained, tmp_path):
    import pytest

    from finebert.errors import DataError

    clf, _ = trained
    path = write_csv(tmp_path / "odd.csv", ["review", "sentiment"], [["fine", "neutral"], ["bad", "negative"]])
    with pytest.raises(DataError, match=r"odd.csv: row 1 has the label 'neutral', which the model does not know \(negative, positive\)"):
        finebert.evaluate(clf, path)
