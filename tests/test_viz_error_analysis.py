"""Error analysis views of chapter 09: [CLS] attention rows, confusion matrix, mistake browser."""

import base64

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ptlearn.data import collate  # noqa: E402
from ptlearn.finetune import apply_prefix_tuning  # noqa: E402
from ptlearn.models import BertConfig, BertForSequenceClassification  # noqa: E402
from ptlearn.viz.error_analysis import (  # noqa: E402
    classify_with_attention,
    cls_attention,
    confusion_matrix,
    error_explorer,
    mistake_options,
    plot_confusion_matrix,
)

PNG = b"\x89PNG"
CLASSES = ["World", "Sports", "Business", "Sci/Tech"]


class Tokens:
    """Just enough of the tokenizer protocol: id i is the token "t{i}"."""

    def convert_ids_to_tokens(self, ids):
        return [f"t{i}" for i in ids]


def test_cls_attention_is_the_first_row_averaged_over_heads():
    g = torch.Generator().manual_seed(0)
    layers = tuple(torch.softmax(torch.randn(2, 3, 5, 5, generator=g), -1) for _ in range(2))
    row = cls_attention(layers)
    assert row.shape == (2, 5)
    torch.testing.assert_close(row, layers[-1][:, :, 0, :].mean(1))
    torch.testing.assert_close(row.sum(-1), torch.ones(2))
    assert cls_attention(layers, layer=0, n_prefix=2).shape == (2, 3)


def test_confusion_matrix_counts_and_plot():
    labels, predictions = [0, 0, 1, 2, 3, 3, 3], [0, 1, 1, 2, 2, 3, 3]
    counts = confusion_matrix(labels, predictions, 4)
    assert counts.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 2]]
    fig = plot_confusion_matrix(labels, predictions, CLASSES)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "2\n67%" in texts and len(texts) == 16  # one annotated cell per (true, predicted) pair


def tiny_model(n_classes=4):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=32)
    return BertForSequenceClassification(config, n_classes=n_classes)


def batches():
    g = torch.Generator().manual_seed(1)
    rows = [torch.randint(5, 100, (n,), generator=g).tolist() for n in (6, 9, 4, 7)]
    return [collate([{"input_ids": r, "labels": i} for i, r in enumerate(rows)])]


def test_classify_with_attention_drops_padding_and_restores_mode():
    model = tiny_model().train()
    examples = classify_with_attention(model, batches(), Tokens())
    assert model.training
    assert [len(e["tokens"]) for e in examples] == [6, 9, 4, 7]
    for e in examples:
        assert len(e["weights"]) == len(e["ids"]) == len(e["tokens"])
        assert abs(float(e["weights"].sum()) - 1) < 1e-5  # padding gets no attention
        assert e["prediction"] == int(np.argmax(e["probs"]))
    assert [e["label"] for e in examples] == [0, 1, 2, 3]


def test_classify_with_attention_strips_a_prefix():
    model = apply_prefix_tuning(tiny_model(), n_prefix=3)
    examples = classify_with_attention(model, batches(), Tokens(), n_prefix=3)
    for e in examples:
        assert len(e["weights"]) == len(e["tokens"])
        assert float(e["weights"].sum()) < 1  # the rest went to the prefix


def make_examples():
    pairs = [(0, 0), (0, 1), (2, 3), (2, 3), (3, 3), (1, 0)]  # (label, prediction)
    return [
        dict(
            ids=list(range(i + 3)),
            tokens=[f"w{j}" for j in range(i + 3)],
            weights=np.full(i + 3, 1 / (i + 3)),
            label=t,
            prediction=p,
            probs=np.eye(4)[p] * 0.7 + 0.075,
        )
        for i, (t, p) in enumerate(pairs)
    ]


def test_mistake_options_group_by_confusion():
    options = mistake_options(make_examples(), CLASSES)
    assert options["all mistakes (4)"] == [1, 2, 3, 5]
    assert options["Business read as Sci/Tech (2)"] == [2, 3]
    assert len(options) == 4


def test_error_explorer_browses_mistakes():
    examples = make_examples()
    box = error_explorer(examples, CLASSES)
    assert bytes(box.image.value).startswith(PNG)
    assert box.current["index"] == 1 and box.current["label"] != box.current["prediction"]
    box.controls["example"].value = 3
    assert box.current["index"] == 5 and box.current["tokens"] == examples[5]["tokens"]
    box.controls["confusion"].value = "Business read as Sci/Tech (2)"
    assert box.controls["example"].value == 0 and box.controls["example"].max == 1
    assert box.current["index"] == 2
    box.controls["example"].value = 1
    assert box.current["index"] == 3
    bundle = box._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    static = box.static_bundle()  # the picture, as an output of its own
    assert base64.b64decode(static["image/png"]) == bytes(box.image.value)


def test_error_explorer_without_mistakes_says_so():
    examples = [e for e in make_examples() if e["label"] == e["prediction"]]
    box = error_explorer(examples, CLASSES)  # a widget that says so, not an exception
    assert box.current["index"] is None and box.controls == {}
    assert box.current["message"] == (
        f"No misclassified examples to browse: every one of the {len(examples)} predictions is correct."
    )
    assert bytes(box.image.value).startswith(PNG)
