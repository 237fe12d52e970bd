"""mkdocs hooks (registered in mkdocs.yml): the generated pages `cli.md` (from the argparse
parser of `dualnet.cli`) and `ops.md` (from `dualnet.ops.REGISTRY` and the lowering test
cases), written at build time and never committed."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_page import cli_page  # noqa: E402
from mkdocs.structure.files import File  # noqa: E402
from ops_page import ops_page  # noqa: E402

GENERATED = {"cli.md": cli_page, "ops.md": ops_page}


def on_files(files, config):
    for name, page in GENERATED.items():
        files.append(File.generated(config, name, content=page()))
    return files
