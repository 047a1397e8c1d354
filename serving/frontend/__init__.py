"""Chinese text front end: text normalisation, sentence splitting, prosody, G2P and KAN-TTS symbols.

    front_end = FrontEnd(Vocabulary.from_am_config(am_config))
    for sentence in front_end("您好，欢迎使用。", emotion="happy"):
        sentence.ids          # int64 [T, 6], columns in serving.symbols.STREAMS order
        sentence.pause_after  # seconds of silence after it
"""

from serving.frontend.errors import FrontEndError
from serving.frontend.pipeline import FrontEnd, Sentence

__all__ = ["FrontEnd", "FrontEndError", "Sentence"]
