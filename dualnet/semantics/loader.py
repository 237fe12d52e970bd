"""Loading source files and resolving imports: realpath containment and cycle detection."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from dualnet.budget import BudgetExceeded
from dualnet.diagnostics import Diagnostic, DualnetError, SourceCache, Span, error
from dualnet.io.files import read_limited, too_large
from dualnet.ops.registry import suggest
from dualnet.syntax import ast
from dualnet.syntax.parser import decode_source, parse

MAX_SOURCE_BYTES = 16 * 1024 * 1024


@dataclass(eq=False)
class ModuleInfo:
    """One parsed file and what it declares and imports (names → declarations)."""

    path: Path
    display: str
    tree: ast.Module
    consts: dict[str, ast.Const] = field(default_factory=dict)
    models: dict[str, ast.Model] = field(default_factory=dict)
    imported: dict[str, tuple[ModuleInfo, str, Span]] = field(default_factory=dict)
    namespaces: dict[str, tuple[ModuleInfo, Span]] = field(default_factory=dict)
    import_alls: list[ModuleInfo] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)  # names whose import failed (no follow-ups)
    trains: dict[str, ast.Train] = field(default_factory=dict)  # model name → its train block
    derived: dict[str, str] = field(default_factory=dict)  # model a train block made → its role


class Loader:
    """Parses files once each; imports resolve relative to the importing file and must stay
    inside the root file's directory or an include directory."""

    def __init__(self, include_dirs: tuple[str, ...] = ()):
        self.include_dirs = [Path(os.path.realpath(d)) for d in include_dirs]
        self.sources = SourceCache()
        self.modules: dict[Path, ModuleInfo] = {}
        self.diagnostics: list[Diagnostic] = []
        self._loading: list[Path] = []
        self._roots: list[Path] = []
        self._cwd = Path.cwd()
        self._edited: tuple[Path, str] | None = None  # the root's text in an editor, unsaved

    def display_name(self, path: Path) -> str:
        """Relative to the working directory when inside it, else absolute."""
        path = Path(os.path.abspath(path))
        return str(path.relative_to(self._cwd)) if path.is_relative_to(self._cwd) else str(path)

    def load_root(self, path: str, text: str | None = None) -> ModuleInfo:
        """Load `path` and its imports; `text`, when given, is the root's content (an
        editor's buffer) instead of the file on disk."""
        real = Path(os.path.realpath(path))
        self._roots = [real.parent, *self.include_dirs]
        self._edited = None if text is None else (real, text)
        return self._load(real, self.display_name(Path(path)), None)

    def _read(self, real: Path, display: str, span: Span | None) -> str:
        try:
            if self._edited is not None and self._edited[0] == real:  # as if it were on disk
                data = self._edited[1].encode("utf-8", "surrogatepass")
                if len(data) > MAX_SOURCE_BYTES:
                    raise too_large(display, "source file", MAX_SOURCE_BYTES)
            else:
                data = read_limited(real, MAX_SOURCE_BYTES, "source file", display)
        except DualnetError as exc:  # at the import that named the file, if any
            raise DualnetError([replace(d, span=span) for d in exc.diagnostics]) from None
        try:
            text = decode_source(data, display)
        except DualnetError:  # keep a readable copy so the diagnostic can show the line
            self.sources.texts[display] = data.decode("utf-8-sig", errors="replace")
            raise
        self.sources.texts[display] = text
        return text

    def _load(self, real: Path, display: str, span: Span | None) -> ModuleInfo:
        if real in self.modules:
            return self.modules[real]
        text = self._read(real, display, span)
        tree = parse(text, display)
        info = ModuleInfo(real, display, tree)
        self._loading.append(real)
        try:
            self._declare(info)
        finally:
            self._loading.pop()
        self.modules[real] = info
        return info

    def _declare(self, info: ModuleInfo) -> None:
        seen: dict[str, Span] = {}

        def claim(name: str, span: Span) -> bool:
            if name in seen:
                self.diagnostics.append(
                    Diagnostic(
                        "E-REDEFINED",
                        f"`{name}` is declared twice in {info.display}",
                        span,
                        "declared again here",
                        (f"first declared at {seen[name]}",),
                    )
                )
                return False
            seen[name] = span
            return True

        for decl in info.tree.decls:
            if isinstance(decl, ast.Const) and claim(decl.name.id, decl.name.span):
                info.consts[decl.name.id] = decl
            elif isinstance(decl, ast.Model) and claim(decl.name.id, decl.name.span):
                info.models[decl.name.id] = decl
            elif isinstance(decl, ast.Train):
                self._train(info, decl, claim)
            elif isinstance(decl, ast.Import):
                try:
                    self._import(info, decl, claim)
                except BudgetExceeded:
                    raise
                except DualnetError as exc:
                    self.diagnostics.extend(exc.diagnostics)
                    info.failed.update(_bound_names(decl))

    def _train(self, info: ModuleInfo, decl: ast.Train, claim) -> None:
        """Keep the block, and declare its `loss` and `metrics` as the parameter-free models
        `<Model>Loss` and `<Model>Metrics` (`derived_name`)."""
        name = decl.model.id
        if name in info.trains:
            first = info.trains[name].model.span
            self.diagnostics.append(
                Diagnostic(
                    "E-REDEFINED",
                    f"model `{name}` has two train blocks",
                    decl.model.span,
                    "second train block",
                    (f"the first is at {first}",),
                )
            )
            return
        info.trains[name] = decl
        for fn in decl.functions:
            if fn.name.id not in ROLES:
                continue  # reported when the block is checked
            model_name = derived_name(name, fn.name.id)
            if claim(model_name, fn.name.span):
                info.models[model_name] = ast.Model(
                    fn.span, ast.Name(fn.name.span, model_name), (), (fn.forward,)
                )
                info.derived[model_name] = fn.name.id

    def _import(self, info: ModuleInfo, decl: ast.Import, claim) -> None:
        target = self._resolve(info, decl)
        if target in self._loading:
            chain = [self.display_name(p) for p in self._loading[self._loading.index(target) :]]
            raise error(
                "E-IMPORT",
                "import cycle: " + " → ".join([*chain, chain[0]]),
                decl.path_span,
                "imported again here",
            )
        imported = self._load(target, self.display_name(target), decl.path_span)
        if decl.names is not None:
            for item in decl.names:
                local = item.alias or item.name
                if item.name not in imported.models and item.name not in imported.consts:
                    hint = suggest(item.name, [*imported.models, *imported.consts])
                    self.diagnostics.append(
                        Diagnostic(
                            "E-IMPORT",
                            f"{imported.display} declares no `{item.name}`",
                            item.span,
                            "not found",
                            (f"did you mean `{hint}`?",) if hint else (),
                        )
                    )
                    info.failed.add(local)
                    continue
                if claim(local, item.span):
                    info.imported[local] = (imported, item.name, item.span)
        elif decl.alias is not None:
            if claim(decl.alias, decl.span):
                info.namespaces[decl.alias] = (imported, decl.span)
        else:
            info.import_alls.append(imported)

    def _resolve(self, info: ModuleInfo, decl: ast.Import) -> Path:
        if not decl.path or "\x00" in decl.path:
            raise error("E-IMPORT", "empty or invalid import path", decl.path_span)
        candidates = [info.path.parent / decl.path, *(d / decl.path for d in self.include_dirs)]
        for candidate in candidates:
            real = Path(os.path.realpath(candidate))
            if real.is_dir():
                raise error(
                    "E-IMPORT",
                    f'cannot import "{decl.path}": it is a directory',
                    decl.path_span,
                    "a directory",
                    ["import a .dnet file"],
                )
            if real.exists():  # a FIFO or a device is refused when it is read
                if not any(real.is_relative_to(root) for root in self._roots):
                    raise error(
                        "E-IMPORT",
                        f'import "{decl.path}" leaves the allowed directories',
                        decl.path_span,
                        "outside the search path",
                        [
                            "imports must stay inside the compiled file's directory "
                            "or a directory given with -I"
                        ],
                    )
                return real
        raise error(
            "E-IMPORT",
            f'cannot find "{decl.path}"',
            decl.path_span,
            "no such file",
            [f"looked in {self.display_name(c.parent)}" for c in candidates[:3]],
        )


ROLES = ("loss", "metrics")  # the functions of a train block


def derived_name(model: str, role: str) -> str:
    """The model a train block's `loss` or `metrics` declares: `NetLoss`, `NetMetrics`."""
    return f"{model}{role.capitalize()}"


def _bound_names(decl: ast.Import) -> set[str]:
    """The names an import would have bound (none for a plain `import "f"`)."""
    if decl.names is not None:
        return {item.alias or item.name for item in decl.names}
    return {decl.alias} if decl.alias else set()
