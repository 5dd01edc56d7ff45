"""The examples in the client README and docs/events.md are the files the integration
test runs (clients/python/examples/), word for word."""

from __future__ import annotations

import re

import pytest

from base.settings import REPO_ROOT

CLIENT = REPO_ROOT / "clients" / "python"


def python_blocks(path: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO_ROOT / path).read_text(), re.S)


@pytest.mark.parametrize("doc", ["clients/python/README.md", "docs/events.md"])
@pytest.mark.parametrize("example", ["faust_subscriber.py", "plain_consumer.py"])
def test_documented_example_is_the_tested_file(doc: str, example: str) -> None:
    assert (CLIENT / "examples" / example).read_text() in python_blocks(doc)


def test_examples_stay_short() -> None:
    for example in (CLIENT / "examples").glob("*.py"):
        code = [line for line in example.read_text().splitlines()
                if line.strip() and not line.startswith(("import ", "from ", "if __name__",
                                                         "    app.main"))]
        assert len(code) <= 14, (example.name, len(code))


def test_make_install_installs_the_client_package() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "-e 'clients/python[kafka,faust]'" in makefile
    assert "clients/python/pyproject.toml" in makefile.split("$(INSTALLED):")[1].splitlines()[0]
