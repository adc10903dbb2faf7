"""Every public function, class and method of the library carries a docstring."""

import importlib
import inspect
import pkgutil

import cartkinetics


def _undocumented() -> list[str]:
    missing = []
    for info in pkgutil.walk_packages(cartkinetics.__path__, "cartkinetics."):
        if info.name.startswith("cartkinetics.commands"):
            continue  # subcommands are documented by their --help text
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != info.name:
                continue
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if not inspect.getdoc(obj):
                missing.append(f"{info.name}.{name}")
            if inspect.isclass(obj):
                for attr, value in vars(obj).items():
                    if not attr.startswith("_") and inspect.isfunction(value) and not value.__doc__:
                        missing.append(f"{info.name}.{name}.{attr}")
    return missing


def test_every_public_object_has_a_docstring():
    missing = _undocumented()
    assert not missing, "public objects without a docstring:\n" + "\n".join(missing)
