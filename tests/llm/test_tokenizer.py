"""The SentencePiece tokenizer against llama.cpp's test vectors, the golden models' prompt ids,
GGML-era vocabularies, SentencePiece itself (when installed), and hand-checked small
vocabularies."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import ModelFormatError
from agent.llm import tokenizer as tokmod
from agent.llm.formats.files import open_model_file
from agent.llm.formats.ggml import UNK_TEXT, ggml_piece_to_spm
from agent.llm.formats.gguf import read_gguf
from agent.llm.formats.modelfile import (
    TOKEN_BYTE,
    TOKEN_CONTROL,
    TOKEN_NORMAL,
    TOKEN_UNKNOWN,
    Vocab,
)
from agent.llm.tokenizer import Tokenizer, spm_reference
from tests.golden import expected_path, model_paths, vocab_dir

VOCAB_DIR = vocab_dir()
SEPARATOR = "\n__ggml_vocab_test__\n"


def load_vectors() -> list[tuple[str, list[int]]]:
    texts = (
        (VOCAB_DIR / "ggml-vocab-llama-spm.gguf.inp").read_text(encoding="utf-8").split(SEPARATOR)
    )
    lines = (VOCAB_DIR / "ggml-vocab-llama-spm.gguf.out").read_text(encoding="utf-8").split("\n")
    assert texts[-1] == "" and lines[-1] == ""  # the separator also follows the last test
    texts, lines = texts[:-1], lines[:-1]
    assert len(texts) == len(lines)
    return [(t, [int(x) for x in line.split()]) for t, line in zip(texts, lines, strict=False)]


VECTORS = load_vectors()
GGML_VS_GGUF = json.loads((VOCAB_DIR / "tokenizer_ggml_vs_gguf.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return read_gguf(VOCAB_DIR / "ggml-vocab-llama-spm.gguf").vocab


@pytest.fixture(scope="module")
def tok(vocab: Vocab) -> Tokenizer:
    return Tokenizer(vocab)


def to_ggml_era(vocab: Vocab) -> Vocab:
    """The vocabulary as convert.py wrote it into GGML v3 files, read back by the GGML reader's
    mapping."""
    tokens, types = [], np.zeros(len(vocab), np.int32)
    for i, (piece, kind) in enumerate(zip(vocab.tokens, vocab.types.tolist(), strict=False)):
        if kind == TOKEN_BYTE:
            stored = bytes([int(piece[3:5], 16)])
        elif kind == TOKEN_UNKNOWN:
            stored = UNK_TEXT
        elif kind == TOKEN_CONTROL:
            stored = b""
        else:
            stored = piece.replace("\u2581", " ").encode("utf-8")
        tokens_i, types[i] = ggml_piece_to_spm(stored, i)
        tokens.append(tokens_i)
    return Vocab(tokens, vocab.scores.copy(), types)


def small_vocab(
    pieces: list[tuple[str, float]], *, byte_tokens: bool = False, prefix: bool = False
) -> Vocab:
    """<unk> <s> </s>, optionally the 256 byte tokens, then ``pieces`` as NORMAL pieces."""
    tokens, scores, types = (
        ["<unk>", "<s>", "</s>"],
        [0.0, 0.0, 0.0],
        [TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL],
    )
    if byte_tokens:
        for b in range(256):
            tokens.append(f"<0x{b:02X}>")
            scores.append(0.0)
            types.append(TOKEN_BYTE)
    for text, score in pieces:
        tokens.append(text)
        scores.append(score)
        types.append(TOKEN_NORMAL)
    return Vocab(
        tokens, np.array(scores, np.float32), np.array(types, np.int32), add_space_prefix=prefix
    )


def pieces_of(tok: Tokenizer, ids: list[int]) -> list[str]:
    return [tok.token_text(i) for i in ids]


# Texts that stress what differs between tokenizers: whitespace runs, newlines, digits, emoji
# (4-byte, ZWJ sequences), rare scripts, U+2581 typed by the user, and control-token look-alikes.
CHUNKS = st.one_of(
    st.text(max_size=12),
    st.text(
        alphabet=st.sampled_from(list(" \n\t\r\u2581ab0123456789.,'<>/s\u00e4\u4e2d\U0001f999")),
        max_size=16,
    ),
    st.sampled_from(
        [" " * k for k in range(1, 18)]
        + [
            "\n\n",
            "\r\n",
            "\t\t",
            "🦙",
            "👨‍👩‍👧",
            "2023",
            "Hello",
            " world",
            "</s>",
            "<s>",
            "<0x41>",
            "<unk>",
        ]
    ),
)
TEXTS = st.lists(CHUNKS, max_size=8).map("".join)


# --- llama.cpp's test vectors ---------------------------------------------------------------------
def test_the_vector_file_has_46_cases():
    assert len(VECTORS) == 46


@pytest.mark.parametrize("text,expected", VECTORS, ids=[repr(t)[:30] for t, _ in VECTORS])
def test_llama_cpp_vectors_through_the_gguf_vocab(tok: Tokenizer, text: str, expected: list[int]):
    assert tok.encode(text, bos=False) == expected
    assert tok.encode_reference(text, bos=False) == expected
    assert tok.encode(text) == [1] + expected if text else [1]


def test_known_ids(tok: Tokenizer):
    assert tok.encode("Hello world") == [1, 15043, 3186]
    assert tok.encode(" Hello world", bos=False) == [29871, 15043, 3186]
    # 🦙 has no piece: its four UTF-8 bytes become <0xF0><0x9F><0xA6><0x99> (ids byte + 3).
    assert tok.encode(" this is 🦙.cpp", bos=False) == [
        29871,
        445,
        338,
        29871,
        243,
        162,
        169,
        156,
        29889,
        8223,
    ]


def test_empty_text(tok: Tokenizer):
    assert tok.encode("", bos=False) == []
    assert tok.encode("") == [tok.bos_id]
    assert tok.decode([]) == ""


def test_without_the_dummy_prefix_hello_is_not_a_word_start(vocab: Vocab):
    # llama.cpp's GGML-era test: "Hello World" untouched -> Hello(10994) ▁World(2787).
    raw = Tokenizer(Vocab(vocab.tokens, vocab.scores, vocab.types, add_space_prefix=False))
    assert raw.encode("Hello World") == [1, 10994, 2787]
    assert raw.decode([10994, 2787]) == "Hello World"
    assert raw.decode([2787]) == " World"  # nothing to strip without the prefix


# --- GGML era -------------------------------------------------------------------------------------
def test_ggml_vs_gguf_file_structure():
    assert len(GGML_VS_GGUF) == 46
    assert [e["text"] for e in GGML_VS_GGUF] == [t for t, _ in VECTORS]


@pytest.mark.parametrize("entry", GGML_VS_GGUF, ids=[repr(e["text"])[:30] for e in GGML_VS_GGUF])
def test_ggml_era_vocab_tokenizes_like_llama_cpp_did(
    vocab: Vocab, tok: Tokenizer, entry: dict, ggml_tok
):
    assert ggml_tok.encode(entry["text"], bos=False) == entry["ggml_era_ids_of_space_plus_text"]
    assert tok.encode(entry["text"], bos=False) == entry["gguf_era_ids"]


@pytest.fixture(scope="module")
def ggml_tok(vocab: Vocab) -> Tokenizer:
    ggml_vocab = to_ggml_era(vocab)
    assert ggml_vocab.tokens == vocab.tokens  # the GGML reader's mapping inverts convert.py's
    assert np.array_equal(ggml_vocab.types, vocab.types)
    return Tokenizer(ggml_vocab)


def test_ggml_era_decode_matches(ggml_tok: Tokenizer, tok: Tokenizer):
    ids = tok.encode("Äpfel 🦙 \n  done</s>")
    assert ggml_tok.decode(ids) == tok.decode(ids) == "Äpfel 🦙 \n  done</s>"


# --- golden models --------------------------------------------------------------------------------
@pytest.mark.parametrize("path", model_paths(), ids=[p.name for p in model_paths()])
def test_prompt_ids_of_every_golden_model(path: Path):
    expected = np.load(expected_path(path))
    prompt = json.loads(str(expected["meta"]))["prompt"]
    tok = Tokenizer(open_model_file(path).vocab)
    ids = tok.encode(prompt)
    assert ids == [int(i) for i in expected["prompt_ids"]]
    assert tok.decode(ids) == prompt


def test_from_model_file():
    path = model_paths()[0]
    tok = Tokenizer.from_model_file(path)
    assert tok.n_vocab == 1024 and tok.bos_id == 1 and tok.eos_id == 2


# --- the algorithm on hand-checked vocabularies ---------------------------------------------------
def test_best_score_merges_first():
    tok = Tokenizer(small_vocab([("a", -10), ("b", -10), ("c", -10), ("ab", -1), ("bc", -2)]))
    assert pieces_of(tok, tok.encode("abc", bos=False)) == ["ab", "c"]
    tok = Tokenizer(small_vocab([("a", -10), ("b", -10), ("c", -10), ("ab", -2), ("bc", -1)]))
    assert pieces_of(tok, tok.encode("abc", bos=False)) == ["a", "bc"]


def test_equal_scores_merge_leftmost_first():
    tok = Tokenizer(small_vocab([("a", -10), ("aa", -1)]))
    assert pieces_of(tok, tok.encode("aaa", bos=False)) == ["aa", "a"]
    assert pieces_of(tok, tok.encode("aaaaa", bos=False)) == ["aa", "aa", "a"]


def test_merges_continue_on_merged_symbols():
    tok = Tokenizer(
        small_vocab(
            [
                ("a", -9),
                ("b", -9),
                ("c", -9),
                ("d", -9),
                ("ab", -1),
                ("cd", -2),
                ("abcd", -5),
                ("bc", -3),
            ]
        )
    )
    # ab (-1) and cd (-2) win over bc (-3); then abcd joins the two merged symbols.
    assert pieces_of(tok, tok.encode("abcd", bos=False)) == ["abcd"]


def test_dummy_prefix_and_spaces():
    tok = Tokenizer(
        small_vocab([("\u2581", -9), ("a", -9), ("\u2581a", -1), ("\u2581\u2581", -2)], prefix=True)
    )
    assert pieces_of(tok, tok.encode("a", bos=False)) == ["\u2581a"]
    assert pieces_of(tok, tok.encode("  a", bos=False)) == ["\u2581\u2581", "\u2581a"]
    assert tok.decode(tok.encode("  a")) == "  a"


def test_a_vocab_without_byte_tokens_encodes_unknown_characters_as_unk():
    tok = Tokenizer(small_vocab([("a", -1), ("b", -1)]))
    assert tok.encode("a\u4e2db🦙", bos=False) == [3, 0, 4, 0]
    assert tok.decode(tok.encode("a\u4e2db")) == "ab"  # <unk> gives no text


def test_unknown_characters_fall_back_to_byte_tokens():
    tok = Tokenizer(small_vocab([("a", -1)], byte_tokens=True))
    ids = tok.encode("a\u00e4", bos=False)
    assert pieces_of(tok, ids) == ["a", "<0xC3>", "<0xA4>"]
    assert tok.decode(ids) == "a\u00e4"


def test_control_token_text_stays_plain_text():
    # "<s" is a piece, so a merge into the control piece "<s>" would be possible: it must not
    # happen.
    tok = Tokenizer(small_vocab([("<", -5), ("s", -5), (">", -5), ("<s", -1)], byte_tokens=True))
    assert pieces_of(tok, tok.encode("<s>", bos=False)) == ["<s", ">"]
    full = Tokenizer(read_gguf(VOCAB_DIR / "ggml-vocab-llama-spm.gguf").vocab)
    for text in ("</s>", "<s>", "<unk>", "<0x41>", "x</s>y"):
        ids = full.encode(text, bos=False)
        assert not {0, 1, 2} & set(ids) and all(i > 258 for i in ids), (text, ids)
        assert full.decode(ids) == text


def test_a_piece_spanning_a_word_start_disables_the_word_cache():
    tok = Tokenizer(
        small_vocab([("a", -9), ("b", -9), ("\u2581", -9), ("a\u2581", -1), ("\u2581b", -2)])
    )
    assert tok._word_split is None
    assert pieces_of(tok, tok.encode("a b", bos=False)) == ["a\u2581", "b"]


def test_word_cache_clearing_keeps_results(monkeypatch, tok: Tokenizer):
    monkeypatch.setattr(tokmod, "_CACHE_LIMIT", 3)
    fresh = Tokenizer(tok.vocab)
    text = " ".join(f"w{i} x{i % 4}" for i in range(40))
    assert fresh.encode(text) == tok.encode_reference(text)
    assert len(fresh._cache) <= 3


# --- decode, pieces, streaming --------------------------------------------------------------------
def test_decode_strips_only_the_dummy_prefix_space(tok: Tokenizer):
    assert tok.decode([1, 15043, 3186]) == "Hello world"
    assert tok.decode([15043, 3186]) == "Hello world"
    assert tok.decode([29871, 15043]) == " Hello"  # "▁" then "▁Hello": the second space is text
    assert tok.decode([1, 259, 15043]) == "  Hello"  # "▁▁" loses one space
    assert tok.decode(np.array([1, 15043], dtype=np.int64)) == "Hello"


def test_decode_skips_control_tokens_and_replaces_broken_utf8(tok: Tokenizer):
    assert tok.decode([1, 15043, 2]) == "Hello"
    assert tok.decode([0, 1, 2]) == ""
    assert tok.decode([15043, 243, 162]) == "Hello\ufffd"


@pytest.mark.parametrize("text,_", VECTORS, ids=[repr(t)[:30] for t, _ in VECTORS])
def test_vectors_round_trip(tok: Tokenizer, text: str, _):
    assert tok.decode(tok.encode(text)) == text


def test_piece_bytes_and_token_text(tok: Tokenizer):
    assert tok.n_vocab == 32000 and (tok.bos_id, tok.eos_id) == (1, 2)
    assert tok.piece_bytes(15043) == b" Hello"
    assert tok.piece_bytes(13) == b"\n" and tok.token_text(13) == "<0x0A>"
    assert tok.piece_bytes(243) == b"\xf0"
    assert tok.piece_bytes(1) == b"" and tok.token_text(1) == "<s>"
    assert tok.piece_bytes(0) == b"" and tok.token_text(0) == "<unk>"
    assert tok.token_text(15043) == "\u2581Hello"


def test_stream_decoder_holds_back_a_split_emoji(tok: Tokenizer):
    ids = tok.encode("🦙", bos=False)
    assert ids == [29871, 243, 162, 169, 156]
    dec = tok.stream_decoder()
    out = []
    for i in ids:
        out.append(dec.feed(i))
        if i in (243, 162, 169):
            assert dec.pending
    assert out == [" ", "", "", "", "🦙"]
    assert not dec.pending and dec.flush() == ""


def test_stream_decoder_keeps_the_leading_space_and_flushes_a_broken_tail(tok: Tokenizer):
    dec = tok.stream_decoder()
    assert "".join(dec.feed(i) for i in tok.encode("Hello world", bos=False)) == " Hello world"
    assert dec.feed(2) == ""  # EOS: no text
    assert dec.feed(243) == "" and dec.feed(162) == ""
    assert dec.flush() == "\ufffd"


# --- malformed input ------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [32000, 10**9, -1])
def test_out_of_range_ids_name_the_id(tok: Tokenizer, bad: int):
    for call in (
        lambda: tok.decode([1, 15043, bad]),
        lambda: tok.piece_bytes(bad),
        lambda: tok.token_text(bad),
        lambda: tok.stream_decoder().feed(bad),
    ):
        with pytest.raises(ValueError, match=rf"token id {bad} is out of range .*0\.\.31999"):
            call()


def test_non_integer_ids_and_non_text_input(tok: Tokenizer):
    with pytest.raises(ValueError, match="not an integer"):
        tok.decode([1.5])
    with pytest.raises(ValueError, match="not an integer"):
        tok.decode(["15043"])
    with pytest.raises(TypeError, match="str"):
        tok.encode(b"Hello")


def test_inconsistent_vocabularies_are_rejected():
    good = small_vocab([("a", -1)])
    with pytest.raises(ModelFormatError, match="bos_id is 7"):
        Tokenizer(Vocab(good.tokens, good.scores, good.types, bos_id=7))
    with pytest.raises(ModelFormatError, match="4 tokens, 3 scores"):
        Tokenizer(Vocab(good.tokens, good.scores[:3], good.types))
    with pytest.raises(ModelFormatError, match="0 tokens"):
        Tokenizer(Vocab([], np.zeros(0, np.float32), np.zeros(0, np.int32)))


def test_a_malformed_byte_piece_is_kept_as_text():
    v = small_vocab([("a", -1)])
    v.tokens[1] = "<0xZZ>"
    v.types[1] = TOKEN_BYTE
    tok = Tokenizer(v)
    assert tok.piece_bytes(1) == b"<0xZZ>"
    assert tok.encode("\u00e4", bos=False) == [0]  # no byte tokens for it: unk


# --- properties -----------------------------------------------------------------------------------
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(text=TEXTS)
def test_fast_path_equals_reference(tok: Tokenizer, text: str):
    assert tok.encode(text) == tok.encode_reference(text)


@FUZZ
@given(text=TEXTS)
def test_ggml_era_vocab_equals_gguf_vocab(tok: Tokenizer, ggml_tok: Tokenizer, text: str):
    assert ggml_tok.encode(text) == tok.encode(text)


@FUZZ
@given(text=TEXTS.filter(lambda t: "\u2581" not in t))
def test_round_trip_and_streaming(tok: Tokenizer, text: str):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    dec = tok.stream_decoder()
    streamed = "".join(dec.feed(i) for i in ids) + dec.flush()
    assert streamed == (" " + text if text else "")


@FUZZ
@given(ids=st.lists(st.integers(0, 31999), max_size=40))
def test_decode_any_valid_ids(tok: Tokenizer, ids: list[int]):
    text = tok.decode(ids)
    dec = tok.stream_decoder()
    streamed = "".join(dec.feed(i) for i in ids) + dec.flush()
    body = ids[1:] if ids[:1] == [1] else ids
    # The stream keeps the first token's space; decode drops exactly that one leading space.
    assert text == (
        streamed[1:] if body and tok.piece_bytes(body[0]).startswith(b" ") else streamed
    )


@FUZZ
@given(ids=st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=10))
def test_decode_rejects_any_out_of_range_id(tok: Tokenizer, ids: list[int]):
    bad = [i for i in ids if not 0 <= i < 32000]
    if bad:
        with pytest.raises(ValueError, match=f"token id {bad[0]} "):
            tok.decode(ids)
    else:
        assert isinstance(tok.decode(ids), str)


# --- an independent implementation: SentencePiece itself ------------------------------------------
@pytest.fixture(scope="module")
def sentencepiece(vocab: Vocab):
    spm = pytest.importorskip("sentencepiece")
    pb = pytest.importorskip("sentencepiece.sentencepiece_model_pb2")
    m = pb.ModelProto()
    ts, ns = m.trainer_spec, m.normalizer_spec
    ts.model_type = pb.TrainerSpec.BPE
    ts.vocab_size = len(vocab)
    ts.byte_fallback = True
    ts.allow_whitespace_only_pieces = True
    ts.unk_id, ts.bos_id, ts.eos_id, ts.pad_id = vocab.unk_id, vocab.bos_id, vocab.eos_id, -1
    ns.name = "identity"
    ns.add_dummy_prefix = True
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    for piece, score, kind in zip(
        vocab.tokens, vocab.scores.tolist(), vocab.types.tolist(), strict=False
    ):
        p = m.pieces.add()
        p.piece, p.score, p.type = piece, score, kind  # GGUF token types are SentencePiece's
    return spm.SentencePieceProcessor(model_proto=m.SerializeToString())


def test_sentencepiece_agrees_on_the_vectors(sentencepiece, tok: Tokenizer):
    for text, expected in VECTORS:
        assert sentencepiece.encode(text) == expected == tok.encode(text, bos=False)


@FUZZ
@given(text=TEXTS)
def test_sentencepiece_agrees_on_random_text(sentencepiece, tok: Tokenizer, text: str):
    assert tok.encode(text, bos=False) == sentencepiece.encode(text)


# --- a web page -----------------------------------------------------------------------------------
def web_page(size: int = 100_000) -> str:
    """About ``size`` characters of page-like text from this repository's own docs and sources."""
    root = Path(__file__).resolve().parents[2]
    parts = [
        p.read_text(encoding="utf-8", errors="replace") for p in sorted(root.glob("agent/**/*.py"))
    ]
    text = "\n\n".join(parts)
    while len(text) < size:
        text += "\n" + text
    return text[:size].replace("\u2581", "_")  # a typed U+2581 would decode as a space


def test_a_100kb_page_equals_the_reference(tok: Tokenizer):
    page = web_page()
    fresh = Tokenizer(tok.vocab)
    t0 = time.perf_counter()
    ids = fresh.encode(page)
    print(f"\n100 KB page: {len(ids)} tokens in {time.perf_counter() - t0:.3f}s (cold cache)")
    assert ids == spm_reference(tok.vocab, page, bos=True)
    assert fresh.decode(ids) == page


def test_a_lone_surrogate_falls_back_to_bytes_instead_of_crashing(tok: Tokenizer):
    ids = tok.encode("a\ud800b", bos=False)
    assert ids == tok.encode_reference("a\ud800b", bos=False)
    assert pieces_of(tok, ids)[1:4] == ["<0xED>", "<0xA0>", "<0x80>"]
    assert "\ufffd" in tok.decode(ids)
