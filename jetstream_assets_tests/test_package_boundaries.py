"""Product code never imports the demo or the tests: the demo (a generated world, sample tables, the `demo`
command) builds on the product, never the other way round. Checked on the source, every import statement of
every module, including imports inside functions."""

import ast
import subprocess
import sys
from pathlib import Path

import jetstream_assets

PACKAGE = Path(jetstream_assets.__file__).parent
FORBIDDEN = ("jetstream_assets.demo", "jetstream_assets_tests")


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `path`, relative imports resolved."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found += [(node.lineno, base)] + [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _violations() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(PACKAGE / "demo"):
            continue
        for line, name in _imported_modules(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                out.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    return out


def test_no_product_module_imports_the_demo_or_the_tests():
    assert _violations() == []


def test_the_scan_sees_relative_and_function_level_imports(tmp_path, monkeypatch):
    """The check itself finds what it must: a relative import and one inside a function."""
    fake = tmp_path / "jetstream_assets"
    (fake / "config").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "config" / "__init__.py").write_text("")
    (fake / "config" / "x.py").write_text("def f():\n    from ..demo import run\n")
    (fake / "y.py").write_text("import os\nfrom jetstream_assets.demo.run import run_demo\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert _violations() == [
        "jetstream_assets/config/x.py:2 imports jetstream_assets.demo",
        "jetstream_assets/config/x.py:2 imports jetstream_assets.demo.run",
        "jetstream_assets/y.py:2 imports jetstream_assets.demo.run",
        "jetstream_assets/y.py:2 imports jetstream_assets.demo.run.run_demo",
    ]


def test_the_demo_command_comes_from_the_demo_package_through_an_entry_point():
    """`jetstream-assets demo` still exists (the README's first command), added by the demo package; the other
    commands never load it."""
    probe = (
        "import sys\nfrom jetstream_assets.cli import build_parser\n"
        "build_parser(['run', '--help'])\nprint('AFTER RUN', 'jetstream_assets.demo' in sys.modules)\n"
        "parser = build_parser(['demo', '--help'])\n"
        "print('AFTER DEMO', sorted(m for m in sys.modules if m.startswith('jetstream_assets.demo')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "AFTER RUN False" in out
    assert "AFTER DEMO ['jetstream_assets.demo', 'jetstream_assets.demo.command']" in out
    help_text = subprocess.run(
        [sys.executable, "-m", "jetstream_assets.cli", "demo", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--clients" in help_text
