"""Pinyin -> KAN-TTS phones: every Mandarin syllable pypinyin can emit, and the tricky spellings."""

import pytest

from serving.frontend.phones import (
    InvalidSyllable,
    is_syllable,
    pinyin_syllables,
    syllable_phones,
)
from serving.symbols import PHONES


def test_pypinyin_inventory_is_complete_enough():
    syllables = pinyin_syllables()
    # The standard table has a bit over 400 syllables; pypinyin adds interjections (m, n, hm, ng, ê).
    assert len(syllables) > 400
    assert {"zhuang", "lve", "nv", "jiong", "shei", "den", "m", "n", "hm", "ng"} <= syllables


def test_every_syllable_and_its_erhua_maps_to_known_phones():
    phones = set(PHONES)
    checked = 0
    for syllable in sorted(pinyin_syllables()):
        initial, final = syllable_phones(syllable)
        assert initial in phones and final in phones, syllable
        if syllable != "er":
            r_initial, r_final = syllable_phones(syllable + "r")
            assert r_initial == initial and r_final in phones and r_final.endswith("r_c"), syllable
        checked += 1
    assert checked == len(pinyin_syllables())


# Hand-written from KAN-TTS's pinyin rules (`kantts/preprocess/languages/PinYin/py2phoneMap.txt`).
EXPECTED = {
    # zero initials
    "a": ("ga", "a_c"), "ang": ("ga", "ang_c"), "e": ("ge", "e_c"), "er": ("ge", "er_c"),
    "eng": ("ge", "eng_c"), "o": ("go", "o_c"), "ou": ("go", "ou_c"),
    # y/w: initial + the rest of the spelling
    "yi": ("y_c", "i_c"), "ye": ("y_c", "e_c"), "ya": ("y_c", "a_c"), "you": ("y_c", "ou_c"),
    "yin": ("y_c", "in_c"), "ying": ("y_c", "ing_c"), "yong": ("y_c", "ong_c"),
    "yu": ("y_c", "v_c"), "yue": ("y_c", "ve_c"), "yuan": ("y_c", "van_c"), "yun": ("y_c", "vn_c"),
    "yvan": ("y_c", "van_c"), "wu": ("w_c", "u_c"), "wo": ("w_c", "o_c"), "wei": ("w_c", "ei_c"),
    "wen": ("w_c", "en_c"), "weng": ("w_c", "eng_c"),
    # ü after j q x l n
    "ju": ("j_c", "v_c"), "jv": ("j_c", "v_c"), "que": ("q_c", "ve_c"), "xuan": ("xx_c", "van_c"),
    "jun": ("j_c", "vn_c"), "lv": ("l_c", "v_c"), "lve": ("l_c", "ve_c"), "lue": ("l_c", "ve_c"),
    "nv": ("n_c", "v_c"), "nüe": ("n_c", "ve_c"),
    # apical vowels
    "zi": ("z_c", "ii_c"), "ci": ("c_c", "ii_c"), "si": ("s_c", "ii_c"),
    "zhi": ("zh_c", "ih_c"), "chi": ("ch_c", "ih_c"), "shi": ("sh_c", "ih_c"), "ri": ("r_c", "ih_c"),
    # contracted finals
    "liu": ("l_c", "iou_c"), "xiu": ("xx_c", "iou_c"), "gui": ("g_c", "uei_c"), "dui": ("d_c", "uei_c"),
    "lun": ("l_c", "uen_c"), "chun": ("ch_c", "uen_c"),
    # x is xx_c
    "xi": ("xx_c", "i_c"), "xiong": ("xx_c", "iong_c"),
    # erhua
    "huar": ("h_c", "uar_c"), "wanr": ("w_c", "anr_c"), "zhir": ("zh_c", "ihr_c"), "cir": ("c_c", "iir_c"),
    "ger": ("g_c", "er_c"), "yer": ("y_c", "er_c"), "jvanr": ("j_c", "vanr_c"), "xiaor": ("xx_c", "iaor_c"),
    "dianr": ("d_c", "ianr_c"), "guir": ("g_c", "ueir_c"), "kunr": ("k_c", "uenr_c"), "jiur": ("j_c", "iour_c"),
    "yuer": ("y_c", "ver_c"), "qur": ("q_c", "vr_c"), "ar": ("ga", "ar_c"), "ningr": ("n_c", "ingr_c"),
    # interjections without a vowel: nearest syllable
    "n": ("ge", "en_c"), "ng": ("ge", "en_c"), "m": ("m_c", "u_c"), "hm": ("h_c", "en_c"),
}


@pytest.mark.parametrize("syllable", sorted(EXPECTED))
def test_tricky_spellings(syllable):
    assert syllable_phones(syllable) == EXPECTED[syllable]


@pytest.mark.parametrize("bad", ["", "x", "zhx", "err", "Zhong", "zhong1", "yy"])
def test_malformed_syllables_are_rejected(bad):
    with pytest.raises(InvalidSyllable):
        syllable_phones(bad)


def test_is_syllable_knows_the_real_inventory():
    for good in ["zhong", "lv", "lü", "jv", "ju", "yvan", "huar", "er", "ger", "m"]:
        assert is_syllable(good), good
    for bad in ["bv", "gi", "jo", "fong", "err", "zhx", "shiong"]:
        assert not is_syllable(bad), bad
