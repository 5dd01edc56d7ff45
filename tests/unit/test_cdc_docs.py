from pathlib import Path

from connectors.source.config import settings_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs" / "connector.md"


def test_settings_reference_in_the_docs_is_generated_from_the_settings():
    assert settings_markdown() in DOCS.read_text(encoding="utf-8"), (
        "regenerate the table: python -m connectors.source.config"
    )
