"""The upstream schemas (../shared/schemas: CRDs, ...) every schema test validates against: one place
that finds them and one rule when they are absent (skip locally, fail under ``MHUBERT_REQUIRE_SCHEMAS=1``,
which .ci/run sets)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIRE_SCHEMAS = "MHUBERT_REQUIRE_SCHEMAS"  # set by .ci/run: a missing schema fails, never skips


def schemas_dir() -> Path | None:
    """``$MHUBERT_SCHEMAS_DIR``, else ``../shared/schemas`` beside the repository (for a git
    worktree: beside its main checkout)."""
    env = os.environ.get("MHUBERT_SCHEMAS_DIR") or os.environ.get("MHUBERT_SCHEMAS")
    if env:
        return Path(env) if Path(env).is_dir() else None
    candidates = [REPO.parent / "shared" / "schemas"]
    try:
        common = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=REPO,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        if common:
            candidates.append(Path(common).parent.parent / "shared" / "schemas")
    except (OSError, subprocess.SubprocessError):
        pass
    return next((c for c in candidates if c.is_dir()), None)


class SchemaSet:
    """The schemas directory; :meth:`validator` gives a CRD's OpenAPI v3 schema as a validator
    whose :meth:`errors` lists every error (path and message), not only the first."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        p = self.root / name
        if not p.exists():
            _missing(f"{p} is missing")
        return p

    def crd(self, name: str, version: str | None = None) -> CrdValidator:
        import yaml

        crd = yaml.load(self.path(name).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        versions = crd["spec"]["versions"]
        v = next((x for x in versions if x["name"] == version), None) if version else versions[0]
        if v is None:
            raise AssertionError(f"{name} has no version {version}: {[x['name'] for x in versions]}")
        return CrdValidator(v["schema"]["openAPIV3Schema"])


class CrdValidator:
    def __init__(self, schema: dict) -> None:
        import jsonschema

        self.schema = schema
        self._v = jsonschema.Draft7Validator(schema)

    def errors(self, doc: dict) -> list[str]:
        """Every error, as ``path: message``, sorted."""
        return sorted(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                      for e in self._v.iter_errors(doc))

    def validate(self, doc: dict) -> None:
        errs = self.errors(doc)
        assert not errs, "schema errors:\n" + "\n".join(errs)


def _missing(why: str) -> None:
    if os.environ.get(REQUIRE_SCHEMAS) == "1":
        pytest.fail(f"{why} and {REQUIRE_SCHEMAS}=1: schema tests must not skip", pytrace=False)
    pytest.skip(f"{why} (set MHUBERT_SCHEMAS_DIR)")




def schema_file(name: str) -> Path:
    """A file of the schemas folder (skip, or fail in CI, when absent)."""
    d = schemas_dir()
    if d is None:
        _missing("../shared/schemas not found")
    return SchemaSet(d).path(name)
