"""docs/configuration.md is what ``python -m ocrfleet_dev.configref`` renders from the programs'
settings classes: a setting added, renamed or redescribed without regenerating it fails here."""

from __future__ import annotations

from pathlib import Path

from ocrfleet_api.settings import ApiSettings
from ocrfleet_dev import configref
from ocrfleet_operator.settings import OperatorSettings
from ocrfleet_worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"


def test_the_configuration_reference_is_current():
    assert DOC.read_text() == configref.render(), (
        f"{configref.OUTPUT} is out of date with the settings classes; regenerate it with "
        f".venv/bin/{configref.COMMAND} (then review and commit it)")


def test_every_variable_of_each_program_is_in_its_table():
    text = DOC.read_text()
    for settings, heading in ((OperatorSettings, "## python -m ocrfleet_operator\n"),
                              (ApiSettings, "## python -m ocrfleet_api\n"),
                              (WorkerSettings, "## python -m ocrfleet_worker\n")):
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        for name in settings.model_fields:
            assert f"| `OCRFLEET_{name.upper()}` |" in section, f"OCRFLEET_{name.upper()} missing under {heading}"


def test_secrets_defaults_are_not_shown_and_computed_ones_are_named():
    text = DOC.read_text()
    assert "| `OCRFLEET_SIGNING_MASTER_KEY` | `\"\"` | the operator |" in text  # empty: nothing to hide
    assert "| `OCRFLEET_CONSUMER_NAME` | *computed at start* |" in text  # the host name and pid: not the doc's


def test_what_the_operator_and_the_chart_set_is_read_from_their_code():
    rendered = configref.rendered_by_operator()
    assert {"OCRFLEET_SIGNING_MASTER_KEY", "OCRFLEET_RATE_LIMIT_REQUESTS"} <= rendered["ocrfleet_api"]
    assert "OCRFLEET_REQUIRE_SIGNATURES" not in rendered["ocrfleet_api"]
    assert {"OCRFLEET_S3_REGION", "OCRFLEET_SOURCE_VOLUME_ROOT"} <= rendered["ocrfleet_worker"]
    assert "OCRFLEET_TRITON_MAX_BATCH_SIZE" in rendered["ocrfleet_worker.triton_repository"]
    assert configref.set_by_chart()["OCRFLEET_NAMESPACE"] == "chart value `watchNamespace`"
