"""The gallery: ``fastgd demo --plot DIR`` runs every script of examples/, each writing its PNG."""

import os
import sys

import pytest

import fastgd
from fastgd import cli

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PICTURES = {"learning_curve.png", "gd_variants.png", "optimizers.png", "learning_rates.png", "schedules.png"}


def test_demo_plot_writes_every_picture_of_the_gallery(tmp_path, capsys):
    assert cli.main(["demo", "--data", "iris", "--plot", str(tmp_path / "gallery")]) == 0
    written = set(os.listdir(tmp_path / "gallery"))
    assert written == PICTURES
    for name in written:
        with open(tmp_path / "gallery" / name, "rb") as f:
            assert f.read(8) == PNG_SIGNATURE
    out = capsys.readouterr().out
    # the pictures are of fastgd's own fits: the worked example reproduces the notes' iterations,
    # and the too-large learning rate really diverges
    assert "iteration 4: w = 1.4646, b = 0.8346, loss after it = 0.0726555" in out
    assert "lr=0.32, trained on: DivergenceError in epoch 2001" in out
    assert all(f"wrote {tmp_path / 'gallery' / name}" in out for name in PICTURES)


def test_demo_plot_without_the_gallery_says_where_it_looked(tmp_path, monkeypatch, capsys):
    # neither the installed fastgd.examples nor a source tree's examples/ next to the package
    monkeypatch.setitem(sys.modules, "fastgd.examples", None)
    monkeypatch.setattr(fastgd, "__file__", str(tmp_path / "site-packages" / "fastgd" / "__init__.py"))
    assert cli._write_gallery(str(tmp_path / "out")) == 1
    assert "examples/" in capsys.readouterr().err and not (tmp_path / "out").exists()
