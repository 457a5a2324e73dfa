"""Hostile command lines and arguments: exit status 2 and one line, never a traceback."""

from __future__ import annotations

import pytest

import signalprop as sp
from signalprop.cli import main
from signalprop.propagate import memory_needed, physical_memory


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["gain", "leaky_relu", "--param", "beta=0.2"], ["--param beta", "its arguments: alpha"]),
        (["gain", "relu", "--param", "alpha=0.2"], ["--param alpha", "its arguments: none"]),
        (["gain", "leaky_relu", "--param", "=0.2"], ["--param must be NAME=NUMBER"]),
        (["gain", "leaky_relu", "--param", "alpha"], ["--param must be NAME=NUMBER"]),
        (["gain", "leaky_relu", "--param", "alpha=-1"], ["--param does not fit leaky_relu"]),
        (["gain", "softmax"], ["must be an elementwise activation", "Got 'softmax' instead."]),
        (["gain", "relux"], ["Did you mean 'relu'?"]),
        (["propagate", "--depth", "100000000"], ["--depth 100000000", "GB"]),
        (["propagate", "--width", "10000000"], ["--width 10000000", "GB"]),
        (["propagate", "--batch", "1000000000"], ["--batch 1000000000", "GB"]),
    ],
)
def test_user_errors_exit_2_with_one_line_and_nothing_on_stdout(argv, words, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no table header printed before the error
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("signalprop: error: ")
    assert "Traceback" not in captured.err
    for word in words:
        assert word in captured.err


def test_the_api_refuses_foreign_activation_arguments_by_name():
    with pytest.raises(ValueError, match=r"must be none: relu takes no arguments. Got \['alpha'\]"):
        sp.gain("relu", alpha=0.2)
    with pytest.raises(ValueError, match=r"arguments of leaky_relu: \['alpha'\]. Got \['beta'\]"):
        sp.activations.create("leaky_relu", beta=0.2)
    with pytest.raises(ValueError, match=r"arguments of he_normal: \['seed'\]. Got \['scale'\]"):
        sp.init.create("he_normal", scale=2.0)
    assert sp.gain("leaky_relu", alpha=0.2) == pytest.approx((2 / (1 + 0.2**2)) ** 0.5, rel=1e-9)


def test_propagate_refuses_a_run_that_cannot_fit_before_allocating():
    total = physical_memory()
    assert total is not None  # this project's machines are POSIX
    # depth × (width² + 4·batch·width) × 4 bytes, written out here.
    assert memory_needed(10, 100, 500) == 10 * (100 * 100 + 4 * 500 * 100) * 4
    depth = int(total / (100 * 100 * 4)) + 1  # the weights alone exceed the machine
    with pytest.raises(ValueError, match=r"must be small enough to fit in memory"):
        sp.propagate("tanh", "glorot_uniform", depth=depth, width=100, batch=2)


def test_cli_errors_name_the_flags_not_python_parameters(capsys):
    assert main(["propagate", "--init", "he_norml"]) == 2
    err = capsys.readouterr().err
    assert "'--init' parameter of signalprop propagate" in err and "'he_normal'?" in err
    assert "identifier" not in err and "signalprop.init" not in err
    assert main(["propagate", "--activation", "relux"]) == 2
    err = capsys.readouterr().err
    assert "'--activation' parameter of signalprop propagate" in err


def test_propagate_help_lists_the_names(capsys):
    with pytest.raises(SystemExit):
        main(["propagate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for name in ("leaky_relu", "selu", "lecun_normal", "variance_scaling", "he_uniform"):
        assert name in out


def test_missing_data_with_no_download_names_the_flags_and_leaves_no_folder(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    argv = ["study", "--preset", "quick", "--out", str(out), "--data-dir", str(empty)]
    assert main([*argv, "--no-download"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "(from --data-dir)" in err and "--no-download" in err
    assert "download=" not in err and "data_dir" not in err
    assert not out.exists()  # nothing made before the data was found missing


def test_version_and_help_epilogs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"signalprop {sp.__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "signalprop phase --activation tanh" in out
    with pytest.raises(SystemExit):
        main(["study", "--help"])
    out = capsys.readouterr().out
    assert "(default 1)" in out  # --jobs shows its default
    assert '"grid": {SETTING: [VALUES]}' in out and "bias_var" in out


def test_initializers_refuse_integer_tensors_in_their_own_words():
    import torch

    with pytest.raises(ValueError, match=r"'tensor' parameter of he_normal_ must be a floating"):
        sp.init.he_normal_(torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"'tensor' parameter of orthogonal_ must be a floating"):
        sp.init.orthogonal_(torch.zeros(3, 3, dtype=torch.int32))
    assert sp.init.zeros_(torch.ones(2, 2, dtype=torch.long)).sum().item() == 0  # no draw: fine


@pytest.mark.parametrize(
    "argv",
    [
        ["diagnose", "--preset", "chapter-relu", "--batch", "100000000"],
        ["autoinit", "--preset", "torch-default-tanh", "--batch", "1000000000"],
    ],
)
def test_a_batch_too_large_for_memory_is_refused_with_the_estimate(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--batch" in err and "GB" in err


def test_an_unknown_study_preset_names_the_flag(tmp_path, capsys):
    assert main(["study", "--preset", "chapter12", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "'--preset' parameter of signalprop study" in err and "Did you mean 'chapter11'?" in err
