"""The Notifier fields the slack, email and apprise providers add: tls_ca_file (email's private CA) is an email
field only, and names a file, never an empty one; the README's provider examples are valid manifests."""

from __future__ import annotations

import re

import pytest
import yaml
from pydantic import ValidationError

from reconciler.core.models import Notifier
from tests.support.paths import REPO

EMAIL = {"kind": "Notifier", "name": "ops", "provider": "email", "smtp_host": "mail.example.com",
         "sender": "qrm@example.com", "to": ["ops@example.com"]}


@pytest.mark.parametrize(("fields", "problem"), [
    ({"tls_ca_file": "certs/smtp-ca.pem"}, None),
    ({"tls_ca_file": ""}, "at least 1 character"),
    ({"provider": "slack", "url": "secret:U", "smtp_host": None, "sender": None, "to": [],
      "tls_ca_file": "ca.pem"}, "tls_ca_file is for email notifiers, not slack"),
])
def test_tls_ca_file_is_an_email_notifiers_ca(fields: dict[str, object], problem: str | None) -> None:
    document = {**EMAIL, **fields}
    document = {key: value for key, value in document.items() if value is not None and value != []}
    if problem is None:
        assert Notifier.model_validate(document).tls_ca_file == "certs/smtp-ca.pem"
        return
    with pytest.raises(ValidationError, match=problem):
        Notifier.model_validate(document)


def readme_provider_examples() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("### Providers\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)


def test_the_readmes_provider_examples_are_valid_notifiers() -> None:
    examples = readme_provider_examples()
    assert len(examples) == 3
    providers = [Notifier.model_validate(yaml.safe_load(example)).provider for example in examples]
    assert providers == ["slack", "email", "apprise"]
