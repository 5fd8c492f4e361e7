"""The package's public namespace: every name in ``__all__`` resolves, and importing the package
(or asking the command line for help) does not load torch."""

import types

import pytest

import skinestimator
from tests.conftest import run_python


def test_every_public_name_resolves_and_is_listed_by_dir():
    for name in skinestimator.__all__:
        value = getattr(skinestimator, name)
        assert not isinstance(value, types.ModuleType), name
    assert set(skinestimator.__all__) <= set(dir(skinestimator))
    with pytest.raises(AttributeError, match="has no attribute 'SkinLesionClassifer'"):
        skinestimator.SkinLesionClassifer  # noqa: B018 - a typo must fail as for any module


def test_importing_the_package_or_asking_for_help_does_not_load_torch():
    out = run_python(
        "import sys, contextlib, io\n"
        "import skinestimator\n"
        "from skinestimator import read_image, load_image_folder\n"
        "from skinestimator.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "print('torch' in sys.modules)\n"
        "from skinestimator import SkinLesionClassifier\n"
        "print('torch' in sys.modules, SkinLesionClassifier.__module__)\n"
    )
    assert out.splitlines() == ["False", "True skinestimator._classifier"]


def test_explain_is_the_function_even_after_its_subpackage_is_imported():
    # Importing a subpackage binds its name in the package; the function of the same name wins.
    out = run_python(
        "import skinestimator.explain\n"
        "import skinestimator.explain._gradcam\n"
        "from skinestimator import explain\n"
        "print(type(explain).__name__, type(skinestimator.explain).__name__)\n"
    )
    assert out == "function function"


def test_star_import_gives_the_public_names():
    namespace: dict = {}
    exec("from skinestimator import *", namespace)  # noqa: S102 - the statement under test
    assert set(skinestimator.__all__) <= set(namespace)
