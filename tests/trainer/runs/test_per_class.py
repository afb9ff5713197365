"""Per-class results from labels and predictions: top-1 per class, the worst classes, the most
frequent confusions, the confusion matrix file and the chart."""

from __future__ import annotations

import csv

from datavolume.runs import RunFolder
from trainer_service.runs import per_class

CLASSES = [{"wnid": f"n{i:08d}", "words": f"thing {i}"} for i in range(4)]


def test_confusion_report_and_files(tmp_path):
    # class 0: 3/4 right (one taken for 2); class 1: 0/2 (both taken for 2); class 2: 2/2;
    # class 3: no val images at all
    labels = [0, 0, 0, 0, 1, 1, 2, 2]
    predicted = [0, 0, 0, 2, 2, 2, 2, 2]
    matrix = per_class.confusion(labels, predicted, 4)
    assert matrix.tolist() == [[3, 0, 1, 0], [0, 0, 2, 0], [0, 0, 2, 0], [0, 0, 0, 0]]

    found = per_class.report(matrix, CLASSES)
    assert [(c["index"], c["top1"], c["images"]) for c in found["per_class"]] == [
        (0, 0.75, 4), (1, 0.0, 2), (2, 1.0, 2), (3, 0.0, 0)]  # fmt: skip
    assert [c["index"] for c in found["worst"]] == [1, 0, 2]  # a class without images is left out
    first, second = found["confused_pairs"]
    assert (first["true"]["wnid"], first["predicted"]["words"], first["count"], first["share"]) == (
        "n00000001", "thing 2", 2, 1.0)  # fmt: skip
    assert (second["true"]["index"], second["predicted"]["index"], second["share"]) == (0, 2, 0.25)

    run = RunFolder(tmp_path)
    per_class.write_confusion_csv(run.confusion, matrix, CLASSES)
    rows = list(csv.reader(run.confusion.open()))
    assert rows[0] == ["true \\ predicted", *(c["wnid"] for c in CLASSES)]
    assert rows[2] == ["n00000001", "0", "0", "2", "0"]
    per_class.plot_worst(run.per_class_png, found["worst"])
    assert run.per_class_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
