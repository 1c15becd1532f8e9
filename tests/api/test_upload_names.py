"""Where an upload is kept (api.upload_names): safe relative paths, extensions kept when cut."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from api.upload_names import MAX_FOLDERS, upload_path
from ingest.formats import format_of
from lectern.errors import InvalidRequestError


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("fees.md", "fees.md"),
        ("  . fees (2024)?.md . ", "fees _2024__.md"),
        ("Gebühren-ü_1.txt", "Gebühren-ü_1.txt"),
        ("X-ray scan X", "X-ray scan X"),  # only spaces and dots are trimmed off the ends
        # A folder upload's relative path keeps its folders...
        ("dirA/notes.txt", "dirA/notes.txt"),
        ("dirA\\sub\\notes.txt", "dirA/sub/notes.txt"),
        ("a//./b/notes.txt", "a/b/notes.txt"),
        ("a/../b.txt", "b.txt"),
        ("dir (1)/.hidden/notes.txt", "dir _1_/hidden/notes.txt"),
        # ...which never climb out of the upload folder...
        ("../../etc/passwd", "etc/passwd"),
        ("a/../../../passwd.txt", "passwd.txt"),
        ("dirA/ .. /x.md", "x.md"),
        # ...while a client's absolute path is not folders anyone chose: its name alone.
        ("/etc/passwd", "passwd"),
        ("C:\\Users\\me\\My Fees.md", "My Fees.md"),
        ("c:notes.md", "notes.md"),
    ],
)
def test_upload_names_become_safe_relative_paths(given, kept):
    assert upload_path(given) == PurePosixPath(kept)
    assert upload_path(kept) == PurePosixPath(kept), "a kept path is kept as it is"


@pytest.mark.parametrize("given", ["", "   ", "..", "docs/..", " . . ", "dirA/", "a/b/ . "])
def test_an_unusable_upload_name_is_refused_with_the_name(given):
    with pytest.raises(InvalidRequestError) as e:
        upload_path(given)
    assert str(e.value) == f"unusable file name {given!r}"


def test_folders_are_bounded_in_depth():
    deep = "/".join(["d"] * MAX_FOLDERS) + "/x.md"
    assert len(upload_path(deep).parts) == MAX_FOLDERS + 1
    with pytest.raises(InvalidRequestError, match=f"9 folders deep; the limit is {MAX_FOLDERS}"):
        upload_path("d/" + deep)


def test_a_long_folder_is_cut_to_100_bytes():
    assert upload_path("f" * 300 + "/x.md") == PurePosixPath("f" * 100, "x.md")


# -- case 5 of issue 15: a cut name keeps its extension ---------------------------------


def test_a_long_name_is_cut_before_its_extension():
    assert upload_path("a" * 300 + ".md") == PurePosixPath("a" * 197 + ".md")


def test_the_extension_stored_is_the_extension_given():
    # Cut at 200 characters, this name used to end in ".html" and be served as text/html.
    given = "a" * 195 + ".html" + "b" * 50 + ".txt"
    kept = upload_path(given)
    assert kept.suffix == ".txt" and len(kept.name) <= 200
    assert format_of(str(kept)).media_type == "text/plain"


def test_names_are_cut_by_utf8_bytes_never_inside_a_character():
    kept = upload_path("ü" * 150 + ".txt").name  # 304 bytes: over the limit, under 200 chars
    assert kept == "ü" * 98 + ".txt" and len(kept.encode()) == 200


def test_a_long_name_without_a_short_extension_is_refused():
    with pytest.raises(InvalidRequestError, match="without an extension short enough to keep"):
        upload_path("a" * 196 + ".txt" + "b" * 60)
