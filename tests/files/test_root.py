"""Tests for L{tcplab.files.root.SafeRoot}: nothing outside the root, ever."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tcplab.files.errors import BadRequest, NotAllowed, NotFound
from tcplab.files.root import SafeRoot


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "files"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "ok.txt").write_text("ok")
    (tmp_path / "files2").mkdir()
    (tmp_path / "files2" / "secret").write_text("secret")
    (tmp_path / "outside.txt").write_text("outside")
    os.symlink(tmp_path / "outside.txt", root / "link-out")
    os.symlink(tmp_path / "files2", root / "dir-out")
    os.symlink(root / "sub" / "ok.txt", root / "link-in")
    os.symlink("sub", root / "relative-in")
    return root


@pytest.mark.parametrize(
    "name",
    [
        "..",
        "../outside.txt",
        "sub/../../outside.txt",
        "../files2/secret",
        "/etc/passwd",
        "sub/\x00ok.txt",
        "..\\outside.txt",
        "sub\\ok.txt",
        "link-out",
        "dir-out/secret",
        "dir-out",
        ".ok.txt.3.tcplab-partial",
        "sub/./../..",
    ],
)
def test_escapes_refused(tree: Path, name: str) -> None:
    """Every way out of the root is refused as not allowed."""
    with pytest.raises(NotAllowed):
        SafeRoot(tree).resolve(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "sub",
        "sub/ok.txt",
        "./sub//ok.txt",
        "link-in",
        "relative-in/ok.txt",
        "new/file.bin",
    ],
)
def test_inside_allowed(tree: Path, name: str) -> None:
    """Paths inside the root, including symlinks that stay inside, resolve."""
    path = SafeRoot(tree).resolve(name)
    assert os.path.realpath(path.path).startswith(os.path.realpath(tree))


def test_missing_is_not_found(tree: Path) -> None:
    """existing() says not found for a path that does not exist."""
    with pytest.raises(NotFound):
        SafeRoot(tree).existing("nope.txt")


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    """A root that is not a directory is rejected up front."""
    with pytest.raises(ValueError):
        SafeRoot(tmp_path / "missing")


def test_root_through_a_symlink(tree: Path, tmp_path: Path) -> None:
    """A root given through a symlink still confines to the real directory."""
    os.symlink(tree, tmp_path / "alias")
    root = SafeRoot(tmp_path / "alias")
    assert root.resolve("sub/ok.txt").exists()
    with pytest.raises(NotAllowed):
        root.resolve("../files2/secret")


@pytest.mark.parametrize("name", ["\ud800", "sub/\udfff.txt", "a\ud800b"])
def test_lone_surrogate_is_a_bad_request(tree: Path, name: str) -> None:
    """A path with a lone surrogate cannot name a file: a bad request, not a crash."""
    with pytest.raises(BadRequest):
        SafeRoot(tree).resolve(name)


def test_undecodable_names_round_trip(tree: Path) -> None:
    """A name that is not UTF-8 on disk, as listed (surrogate-escaped), resolves to it."""
    (tree / os.fsdecode(b"caf\xe9")).write_text("x")
    assert SafeRoot(tree).existing(os.fsdecode(b"caf\xe9")).exists()
