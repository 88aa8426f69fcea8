import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import matplotlib
import pytest

matplotlib.use("Agg")  # no screen here; tests that draw only check that drawing works


@pytest.fixture
def load_mutant(tmp_path, monkeypatch):
    """``load_mutant(module, old, new)``: a fresh copy of ``module`` with one line of it changed.

    The text ``old`` must occur exactly once in the module's source, so a mutation test cannot
    silently stop mutating when the code moves. The copy is imported from a temporary file.
    """

    def load(module: ModuleType, old: str, new: str) -> ModuleType:
        source = Path(module.__file__).read_text()
        assert source.count(old) == 1, f"the mutation site {old!r} must appear exactly once"
        name = f"{module.__name__.rsplit('.', 1)[-1]}_mutant"
        path = tmp_path / f"{name}.py"
        path.write_text(source.replace(old, new))
        spec = importlib.util.spec_from_file_location(name, path)
        mutant = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, mutant)  # dataclasses look the module up
        spec.loader.exec_module(mutant)
        return mutant

    return load
