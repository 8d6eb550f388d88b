"""Jinja2 templates from the project's ``templates/`` folder, rendered with StrictUndefined.

Installed from a wheel, the folder lives inside the package (``provisioner/templates``); in a
source checkout it is the top-level ``templates/``. Rendering happens while planning, before any
host is touched, so a template error stops a run before it changes anything.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.errors import ProvisionerError

if TYPE_CHECKING:
    import jinja2

_PACKAGE_DIR = Path(__file__).resolve().parent


def templates_dir() -> Path:
    """Where the templates are: inside the installed package, else the source checkout's."""
    for candidate in (_PACKAGE_DIR / "templates", _PACKAGE_DIR.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("provisioner templates not found (broken installation?)")


def yaml_scalar(value: Any) -> str:
    """A value as a YAML flow scalar/sequence: JSON is valid YAML and quotes safely."""
    return json.dumps(value)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The template environment (jinja2 is imported here: a k3s run renders no template)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["q"] = yaml_scalar
    return env


def render(name: str, **context: Any) -> str:
    """Render ``templates/<name>``; a missing variable raises instead of rendering empty."""
    import jinja2

    try:
        return environment().get_template(name).render(**context)
    except jinja2.TemplateError as error:
        raise ProvisionerError(f"template error: {error}") from None
