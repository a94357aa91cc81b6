"""The chart's README (what ``helm show readme`` prints) documents every value of values.yaml."""

from __future__ import annotations

from ocrfleet_dev import chartdoc

from .conftest import ROOT


def test_every_value_is_documented_and_the_readme_table_is_current():
    text = (ROOT / "values.yaml").read_text()
    assert chartdoc.undocumented(text) == [], "values without a `# path -- description` comment above them"
    readme = (ROOT / "README.md").read_text()
    assert chartdoc.with_table(readme, text) == readme, \
        "README.md's chart values are out of date: run .venv/bin/python -m ocrfleet_dev.chartdoc"


def test_an_undocumented_or_misnamed_value_is_caught():
    text = """# a -- the a.
a:
  # a.b -- its b,
  # over two lines.
  b: 1
  c: [x]
# d -- the d.
d: {}
"""
    assert chartdoc.undocumented(text) == []  # a.c is covered by a's row
    assert [(v.path, v.default, v.description) for v in chartdoc.chart_values(text)] == [
        ("a", {"b": 1, "c": ["x"]}, "the a."), ("a.b", 1, "its b, over two lines."), ("d", {}, "the d.")]
    assert chartdoc.undocumented("x:\n  y: 1\n") == ["x.y"]
    try:
        chartdoc.chart_values("# x.z -- gone.\nx:\n  y: 1\n")
    except KeyError as e:
        assert "x.z" in str(e)
    else:
        raise AssertionError("a comment naming a value that is not set must fail")
    table = chartdoc.table(text)
    assert "| `a.b` | `1` | its b, over two lines. |" in table and "| `a` |  | the a. |" in table
