"""The zoo's deeper VGGs run their backward test only with the slow tests (``make test-all``)."""

from __future__ import annotations

import pytest

# Built by the same code as vgg11 / vgg11_bn (`cnnkit.models.vgg.make_layers`), only with more 3×3 layers per block:
# their gradient flow is what vgg11's and vgg11_bn's backward tests check. Each takes 5–7 s on one thread (224×224).
DEEPER_VGGS = {"vgg13", "vgg16", "vgg19", "vgg13_bn", "vgg16_bn", "vgg19_bn"}


@pytest.hookimpl(tryfirst=True)  # before pytest's own `-m` selection reads the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        params = getattr(item, "callspec", None)
        name = params.params.get("name") if params else None
        if item.originalname == "test_backward_gives_every_parameter_a_gradient" and name in DEEPER_VGGS:
            item.add_marker(pytest.mark.slow)
