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


def test_torch_missing_beneath_an_extra_names_torch_s_own_install(tmp_path, monkeypatch):
    # A package of an extra that imports torch: the extra would pull a CUDA torch, so the
    # hint is the by-hand CPU install.
    (tmp_path / "lectern_needs_torch.py").write_text("import torch_not_here_for_test\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import lectern.optional as optional

    monkeypatch.setattr(optional, "TORCH", "torch_not_here_for_test")
    monkeypatch.setattr(
        optional, "install_hint",
        lambda extra: "by hand" if extra == "torch_not_here_for_test" else f"extra {extra}",
    )
    with pytest.raises(MissingExtraError) as missing:
        optional.require("lectern_needs_torch", "retrieval")
    assert missing.value.module == "torch_not_here_for_test"
    assert missing.value.install == "by hand"
