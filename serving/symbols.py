"""KAN-TTS linguistic vocabularies: the six symbol streams a Sambert voice reads, and their ids.

The order of every list is the order of the model's embedding rows, so it must match KAN-TTS
(`PinYin/PhoneSet.xml`, `tonelist.txt`, `emotion_types.py`, `ling_unit.py`). Each stream ends with
the pad "_", end-of-sequence "~" and, for checkpoints trained with it, "@[MASK]".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Phones in PhoneSet.xml order: Mandarin (_c), zero-initial pseudo-initials, English ARPAbet, erhua finals, pau.
PHONES = (
    "a_c ai_c an_c ang_c ao_c b_c c_c ch_c d_c e_c ei_c en_c eng_c er_c f_c g_c h_c i_c ia_c ian_c "
    "iang_c iao_c ie_c ih_c ii_c in_c ing_c io_c iong_c iou_c j_c k_c l_c m_c n_c o_c ong_c ou_c p_c "
    "q_c r_c s_c sh_c t_c u_c ua_c uai_c uan_c uang_c uei_c uen_c ueng_c uo_c v_c van_c ve_c vn_c "
    "xx_c z_c zh_c w_c y_c ga ge go aa ae ah ao aw ay b ch d dh eh er ey f g hh ih iy jh k l m n ng "
    "ow oy p r s sh t th uh uw v w y z zh air_c angr_c anr_c aor_c ar_c eir_c engr_c enr_c iangr_c "
    "ianr_c iaor_c iar_c ier_c ihr_c iir_c ingr_c inr_c iongr_c iour_c ir_c ongr_c or_c our_c "
    "uair_c uangr_c uanr_c uar_c ueir_c uenr_c uor_c ur_c vanr_c ver_c vnr_c vr_c pau"
).split()
BREAKS = ("#1", "#2", "#3", "#4")  # prosodic break levels, emitted as sy tokens after the phones
TONES = ("tone1", "tone_none", "tone4", "tone2", "tone3", "tone5", "tone0")  # tonelist.txt order
SYLLABLE_FLAGS = ("s_begin", "s_end", "s_none", "s_both", "s_middle")
WORD_SEGMENTS = ("word_begin", "word_end", "word_middle", "word_both", "word_none")
EMOTIONS = (
    "emotion_none emotion_neutral emotion_angry emotion_disgust emotion_fear emotion_happy "
    "emotion_sad emotion_surprise emotion_calm emotion_gentle emotion_relax emotion_lyrical "
    "emotion_serious emotion_disgruntled emotion_satisfied emotion_disappointed emotion_excited "
    "emotion_anxiety emotion_jealousy emotion_hate emotion_pity emotion_pleasure emotion_arousal "
    "emotion_dominance "
    + " ".join(f"emotion_placeholder{i}" for i in range(1, 10))
).split()

PAD, EOS, MASK = "_", "~", "@[MASK]"
STREAMS = ("sy", "tone", "syllable_flag", "word_segment", "emotion", "speaker")
# The speaker field of every symbol ttsfrd writes. ModelScope looks it up in the voice's speaker list
# (the voice name only picks the directory), so this is the speaker a voice speaks with by default.
DEFAULT_SPEAKER = "F7"


@dataclass(frozen=True)
class Vocabulary:
    """Symbol-to-id tables of one voice, one per stream, in STREAMS order."""

    tables: dict[str, dict[str, int]]

    @classmethod
    def build(cls, speakers: list[str], has_mask: bool = True) -> "Vocabulary":
        specials = [PAD, EOS] + ([MASK] if has_mask else [])
        streams = {
            "sy": ["@" + s for s in PHONES + list(BREAKS)],
            "tone": list(TONES),
            "syllable_flag": list(SYLLABLE_FLAGS),
            "word_segment": list(WORD_SEGMENTS),
            "emotion": list(EMOTIONS),
            "speaker": list(speakers),
        }
        return cls({k: {s: i for i, s in enumerate(v + specials)} for k, v in streams.items()})

    @classmethod
    def from_am_config(cls, am_config: dict, has_mask: bool = True) -> "Vocabulary":
        """The vocabulary of a KAN-TTS am/config.yaml (its `linguistic_unit.speaker_list`, split at commas
        as KAN-TTS splits it: "M7, F7" names " F7", not "F7")."""
        speakers = str(am_config["linguistic_unit"]["speaker_list"]).strip().split(",")
        return cls.build(speakers, has_mask)

    def sizes(self) -> dict[str, int]:
        """Embedding rows per stream, as the checkpoint's tables have them."""
        return {k: len(v) for k, v in self.tables.items()}

    @property
    def speakers(self) -> list[str]:
        return [s for s in self.tables["speaker"] if s not in (PAD, EOS, MASK)]

    @property
    def default_speaker(self) -> str | None:
        """DEFAULT_SPEAKER where the speaker list has it (else a request must name its speaker)."""
        return DEFAULT_SPEAKER if DEFAULT_SPEAKER in self.speakers else None

    def encode(self, tokens: list[tuple[str, str, str, str, str, str]]) -> np.ndarray:
        """Ids of a token sequence, one row per token and one column per stream: int64 [T, 6].

        Each token is (phone or break, tone, syllable_flag, word_segment, emotion, speaker) without
        the "@" prefix. KAN-TTS silently drops unknown phones, which would shift every stream
        against the others; here any unknown symbol raises KeyError naming it.
        """
        ids = np.empty((len(tokens), len(STREAMS)), dtype=np.int64)
        for row, token in enumerate(tokens):
            if len(token) != len(STREAMS):
                raise ValueError(f"token {token!r} has {len(token)} fields, expected {len(STREAMS)}")
            for col, (stream, symbol) in enumerate(zip(STREAMS, token)):
                key = "@" + symbol if stream == "sy" else symbol
                try:
                    ids[row, col] = self.tables[stream][key]
                except KeyError:
                    raise KeyError(f"unknown {stream} symbol {symbol!r}") from None
        return ids
