"""The ``ocrfleet`` command end to end on the embedded path (local Redis, SQLite, replay engine)."""

from __future__ import annotations

import json

from ocrfleet_dev.cli import main, pace


def test_samples_then_process_writes_one_json_line_per_document(tmp_path, capsys):
    samples = tmp_path / "samples"
    assert main(["samples", str(samples), "-n", "4", "--seed", "5"]) == 0
    assert len(list(samples.glob("*.truth.json"))) == 4
    out = tmp_path / "results.jsonl"
    rc = main(["process", str(samples), "--engine", "replay", "--replay-dir", str(samples), "-o", str(out),
               "--mask", "id_number"])
    assert rc == 0
    shown = capsys.readouterr().err
    assert "4/4" in shown and "docs/s" in shown and "pages/s" in shown and "done" in shown, shown
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 4 and all(x["status"] == "succeeded" for x in lines)
    truths = {json.loads(p.read_text())["file"]: json.loads(p.read_text()) for p in samples.glob("*.truth.json")}
    for doc in lines:
        truth = truths[doc["filename"]]
        assert doc["document_type"] == truth["document_type"]
        if truth["document_type"] == "id_card":
            number = next(f for f in doc["pages"][0]["fields"] if f["name"] == "id_number")
            assert number["masked"] and number["value"] == truth["fields"]["id_number"][:3] + "*" * 11 + \
                truth["fields"]["id_number"][-2:]
            assert truth["fields"]["id_number"] not in out.read_text()

    # Run again: the SQLite store beside the output remembers, so nothing is read twice.
    assert main(["process", str(samples), "--engine", "replay", "-o", str(out), "--mask", "id_number"]) == 0
    assert all(json.loads(x)["cached"] for x in out.read_text().splitlines())


def test_a_bad_file_fails_alone_and_sets_the_exit_code(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "empty.pdf").write_bytes(b"")
    (folder / "notes.bin").write_bytes(b"not a document at all")
    out = tmp_path / "out.jsonl"
    assert main(["process", str(folder), "--engine", "replay", "-o", str(out)]) == 1
    errors = sorted(json.loads(x)["error"]["code"] for x in out.read_text().splitlines())
    assert errors == ["empty_document", "unsupported_type"]


def test_the_progress_line_shows_the_rate_so_far_and_the_time_left_at_it():
    assert pace(0, 10, 0, 3.0) == "- docs/s, - pages/s, ETA -"
    assert pace(4, 10, 6, 2.0) == "2.0 docs/s, 3.0 pages/s, ETA 0:00:03"
    assert pace(10, 1000, 10, 60.0) == "0.2 docs/s, 0.2 pages/s, ETA 1:39:00"
    assert pace(10, 10, 25, 5.0) == "2.0 docs/s, 5.0 pages/s, done"
