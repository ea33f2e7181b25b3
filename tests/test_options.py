"""The shared option parser: chat words and slash-command values into Options."""

import pytest

from stemscribe.core.errors import OptionsError
from stemscribe.core.options import Engine, Level, Mode, Options, StemFormat, options_from_pairs, parse_options


def test_full_sentence_of_options():
    opts = parse_options('stems:yes mode:piano instrument:guitar title:"My Song" tempo:92 key:"D minor" time:6/8')
    assert opts.stems is True
    assert opts.mode is Mode.PIANO
    assert opts.instrument == "guitar"
    assert opts.title == "My Song"
    assert opts.tempo_bpm == 92.0
    assert opts.key == "D minor"
    assert opts.time_signature == "6/8"


@pytest.mark.parametrize("text, field, expected", [
    ("key:Bb", "key", "Bb major"),            # bare tonic means major
    ("key:F#m", "key", "F# minor"),           # m suffix means minor
    ("key:'e flat minor'", "key", "Eb minor"),  # written-out accidental
    ("key:H", "key", None),                   # German H is not accepted (ambiguous)
    ("time:C", "time_signature", "4/4"),      # common time
    ("meter:3/4", "time_signature", "3/4"),   # alias key word
    ("bpm:120bpm", "tempo_bpm", 120.0),       # unit suffix tolerated
    ("instrument:fiddle", "instrument", "violin"),  # alias
    ("engine:bp", "engine", Engine.BASIC_PITCH),
    ("level:beginner", "level", Level.EASY),
    ("format:lossless", "stem_format", StemFormat.FLAC),
    ("title=Hello", "title", "Hello"),        # key=value works too
    ("swing:yes", "swing", True),
    ("swing:off", "swing", False),
    ("swing:maybe", "swing", None),           # not yes/no/auto
])
def test_values_and_aliases(text, field, expected):
    if expected is None:
        with pytest.raises(OptionsError):
            parse_options(text)
    else:
        assert getattr(parse_options(text), field) == expected


@pytest.mark.parametrize("text, suggestion", [
    ("mdoe:piano", "mode"),                   # typo in the key
    ("mode:pinao", "piano"),                  # typo in the value
    ("instrument:gitar", "guitar"),
    ("stems:maybe", "stems:yes"),
])
def test_errors_suggest_the_closest_word(text, suggestion):
    with pytest.raises(OptionsError) as info:
        parse_options(text)
    assert suggestion in str(info.value)


@pytest.mark.parametrize("text", [
    'title:"unclosed',                        # unbalanced quote
    "piano",                                  # a bare word is not key:value
    "tempo:fast",                             # not a number
    "tempo:1000",                             # out of range
    "time:7/3",                               # not a real denominator
    "mode:piano mode:solo",                   # given twice
    "title:" + "x" * 200,                     # too long
])
def test_bad_input_is_an_options_error_with_a_message(text):
    with pytest.raises(OptionsError) as info:
        parse_options(text)
    assert info.value.message


def test_auto_words_mean_detect():
    assert parse_options("swing:auto tuning:auto") == Options()
    assert parse_options("swing:auto", base=Options(swing=True)).swing is None


def test_blank_text_gives_base_or_defaults():
    assert parse_options("") == Options()
    base = Options(mode=Mode.SOLO)
    assert parse_options("   ", base=base) is base


def test_pairs_from_slash_command_layer_over_saved_defaults():
    saved = parse_options("mode:piano level:easy")
    opts = options_from_pairs({"stems": True, "title": "Song", "instrument": None, "level": ""}, base=saved)
    assert opts.mode is Mode.PIANO and opts.level is Level.EASY  # kept from defaults
    assert opts.stems is True and opts.title == "Song"


def test_round_trip_through_plain_data():
    opts = parse_options('mode:stems stems:yes title:"Ä song" tempo:88 format:flac chords:no')
    data = opts.to_dict()
    assert data["mode"] == "stems" and data["stem_format"] == "flac"
    assert Options.from_dict(data) == opts
    assert Options.from_dict({**data, "future_field": 1}) == opts
