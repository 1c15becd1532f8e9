"""SearchFilter: what it allows, and the values it refuses when made."""

from __future__ import annotations

import dataclasses

import pytest

from lectern.types import SearchFilter


def test_an_empty_filter_allows_everything_and_restricts_nothing():
    f = SearchFilter()
    assert f.allows("any") and not f.restricts
    assert f.exclude_documents == frozenset() and f.only_documents is None


def test_excluded_documents_are_refused_and_the_rest_allowed():
    f = SearchFilter(exclude_documents=frozenset({"a", "b"}))
    assert not f.allows("a") and not f.allows("b") and f.allows("c") and f.restricts


def test_an_allow_list_admits_only_its_documents_and_exclusion_wins():
    f = SearchFilter(exclude_documents=frozenset({"a"}), only_documents=frozenset({"a", "b"}))
    assert [f.allows(d) for d in ("a", "b", "c")] == [False, True, False]
    nothing = SearchFilter(only_documents=frozenset())
    assert not nothing.allows("a") and nothing.restricts


def test_any_collection_of_ids_is_kept_as_a_frozenset():
    f = SearchFilter(exclude_documents={"a"}, only_documents=["b", "b", "c"])  # type: ignore[arg-type]
    assert f.exclude_documents == frozenset({"a"}) and f.only_documents == frozenset({"b", "c"})
    assert f == SearchFilter(frozenset({"a"}), frozenset({"b", "c"}))
    assert hash(f) == hash(SearchFilter(frozenset({"a"}), frozenset({"b", "c"})))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        *(("exclude_documents", v) for v in ("doc-1", b"doc-1", 7, None)),
        *(("only_documents", v) for v in ("doc-1", b"doc-1", 7)),  # None: no allow-list
    ],
)
def test_a_plain_string_or_a_non_collection_is_a_type_error_naming_the_field(field, value):
    with pytest.raises(TypeError, match=rf"^{field} must be a set of document ids, got "):
        SearchFilter(**{field: value})


def test_a_non_string_id_is_a_type_error_naming_it():
    with pytest.raises(
        TypeError, match=r"^exclude_documents must hold document ids \(str\), got 3$"
    ):
        SearchFilter(exclude_documents=frozenset({3}))  # type: ignore[arg-type]


def test_a_filter_cannot_be_changed():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SearchFilter().exclude_documents = frozenset({"a"})  # type: ignore[misc]
