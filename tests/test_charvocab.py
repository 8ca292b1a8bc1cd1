import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatrnn.charvocab import CharVocab

chars = st.characters(blacklist_categories=("Cs",))


@given(st.text(alphabet=chars, min_size=1, max_size=200))
def test_encode_array_matches_encode_and_decodes_back(text):
    v = CharVocab(text)
    arr = v.encode_array(text)
    assert arr.tolist() == v.encode(text)
    assert v.decode(arr.tolist()) == text


def test_dtype_by_vocabulary_size():
    assert CharVocab("abc").dtype == np.uint8
    assert CharVocab(chr(i) for i in range(0x4E00, 0x4E00 + 300)).dtype == np.uint16


def test_ids_are_a_pure_function_of_the_character_set():
    assert CharVocab("cab").chars == CharVocab("abcabc").chars == ["a", "b", "c"]


def test_unknown_characters_are_reported_not_fatal():
    ids, unknown = CharVocab("abc").split_known("a😀bxa😀")
    assert ids == [0, 1, 0] and unknown == ["😀", "x"]
    with pytest.raises(KeyError):
        CharVocab("abc").encode_array("abx")
