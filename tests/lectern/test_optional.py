"""Optional dependencies: a missing one names the command that installs it."""

import json

import pytest

from lectern.errors import MissingExtraError
from lectern.optional import install_hint, require


def test_a_present_module_is_returned():
    assert require("json", "model") is json
    assert require("json.decoder", "retrieval").JSONDecoder is json.JSONDecoder


def test_a_missing_module_names_the_install_command():
    with pytest.raises(MissingExtraError) as missing:
        require("lectern_no_such_package", "model")
    assert "pip install 'lectern[model]'" in str(missing.value)
    assert missing.value.module == "lectern_no_such_package"
    assert isinstance(missing.value, ImportError), "callers catching ImportError still do"


def test_a_missing_parent_package_is_the_one_named():
    with pytest.raises(MissingExtraError, match="lectern_absent is not installed"):
        require("lectern_absent.sub.module", "retrieval")


def test_torch_is_installed_by_hand():
    assert install_hint("torch").startswith("pip install torch==")
    with pytest.raises(MissingExtraError, match="pip install torch=="):
        require("lectern_no_such_torch", "torch")


def test_an_unknown_extra_is_refused_even_for_a_present_module():
    with pytest.raises(ValueError, match="unknown extra 'modle'"):
        require("json", "modle")
