"""The pinned dependencies are the ones the code uses."""

import re
import tomllib

from diffmine_assets_tests.conftest import REPO

# distributions used without an import of their own name
NOT_IMPORTED = {
    "dagster-webserver": "the UI server that `diffmine ui` (dagster dev) starts",
}
IMPORT_NAMES = {"scikit-image": "skimage", "scikit-learn": "sklearn", "pillow": "PIL", "pyyaml": "yaml", "universal-pathlib": "upath"}


def test_every_pinned_dependency_is_imported_by_the_package():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    source = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "diffmine_assets").rglob("*.py"))
    unused = []
    for dep in deps:
        dist = re.split(r"[=<>!~\[; ]", dep, maxsplit=1)[0].lower()
        assert "==" in dep, f"{dep}: pin it exactly"
        if dist in NOT_IMPORTED:
            continue
        module = IMPORT_NAMES.get(dist, dist.replace("-", "_"))
        if not re.search(rf"^\s*(import|from)\s+{re.escape(module)}\b", source, flags=re.M):
            unused.append(dist)
    assert unused == [], f"pinned but never imported: {unused}"
