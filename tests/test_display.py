"""Notebook display: volnet's objects show the rows their text tables print, as HTML in the theme's colours."""

import re

import numpy as np

import volnet
from volnet.analysis import analyze
from volnet.display import html_table
from volnet.layers import FC, Conv2D, MaxPool, ReLU


def _cells(page: str) -> list[list[str]]:
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, flags=re.S)
            for row in re.findall(r"<tr>(.*?)</tr>", page, flags=re.S)]


def test_html_table_escapes_aligns_and_sets_no_colour():
    page = html_table(("name", "count"), [("<b>x</b>", "1,234"), ("two\nlines", "5")], title="T & co",
                      right=(1,), notes="total: 5 < 6")
    assert _cells(page) == [["name", "count"], ["&lt;b&gt;x&lt;/b&gt;", "1,234"], ["two\nlines", "5"]]
    assert page.count("text-align:right") == 3 and page.count("text-align:left") == 3
    assert "T &amp; co" in page and "<pre style='margin:6px 0 0 0'>total: 5 &lt; 6</pre>" in page
    # readable in light and dark themes: no colour or background of its own, rules in the text's colour
    assert not re.search(r"background|color:\s*#|color:\s*rgb", page)
    assert "currentColor" in page


def test_sequential_shows_its_summary_rows():
    net = volnet.Sequential([Conv2D(4, 3, P=1), ReLU(), MaxPool(2), FC(10)], input_shape=(8, 8, 1))
    rows = _cells(net._repr_html_())
    text = net.summary().splitlines()
    assert rows[0] == ["#", "layer", "output volume", "params"]
    assert len(rows) == 1 + 1 + len(net.layers)  # header, INPUT, one per layer
    for row, line in zip(rows[1:], text[2:]):
        assert line.split() == " ".join(row).split()  # the same cells the terminal prints
    assert f"{net.num_params:,} parameters" in net._repr_html_()


def test_a_model_shows_its_classes_and_its_net():
    net = volnet.Sequential([FC(3)], input_shape=(2, 2, 1))
    model = volnet.Model(net, classes=["cat", "dog", "<bird>"])
    page = model._repr_html_()
    assert "3 classes (cat, dog, &lt;bird&gt;), not normalised" in page
    assert net._repr_html_() in page


def test_the_analysis_report_shows_its_table_rows_and_totals():
    report = analyze(volnet.zoo.lenet(allocate=False), batch=8)
    page = report._repr_html_()
    rows = _cells(page)
    assert rows[0][:3] == ["#", "layer", "output"] and len(rows) == 2 + len(report.rows)
    assert rows[1][1] == "INPUT" and rows[-1][4] == f"{report.rows[-1].params:,}"
    assert f"parameters: {report.total_params:,}" in page and "batch 8" in page
    assert np.all([len(row) == 9 for row in rows])
