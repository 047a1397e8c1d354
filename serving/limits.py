"""Request limits: the one place for the bounds on the work one request can ask for, and the batch size.

Every step checks what reaches it against these, so that a request can neither take the server's cores
for minutes nor fail the other requests of its batch (README "Limits"). Queue sizes and timeouts are
deploy settings (deploy/targets/<target>.yaml).
"""

import math

MAX_TEXT_CHARS = 2000          # characters of a `tts` request; longer texts get a clear error
MAX_STREAM_TEXT_CHARS = 100_000  # a `tts_stream` request works sentence by sentence, so it may be longer
MAX_SENTENCE_CHARS = 50        # the front end splits longer sentences at clause and word boundaries
# Symbols (phones and breaks) of one sentence the acoustic model takes. The front end's sentences have at
# most ~150; a longer one (IDS made elsewhere) is read as KAN-TTS reads it past its 800-row position table,
# whose rows it regrows with the table's formula: the exported table is that long.
MAX_SENTENCE_TOKENS = 1600
MAX_BATCH_SIZE = 64            # rows (sentences) per execute of the steps, so also sentences per request
SPEED_RANGE = (0.5, 2.0)       # SPEED scales phone durations by 1/SPEED
SENTENCE_PAUSE_S = 0.25        # silence joined between sentences (KAN-TTS uses 0.28 s)
MAX_BREAK_S = 10.0             # one SSML <break>
MAX_AUDIO_S = 600.0            # audio of one `tts` request, pauses included (known once durations are)

# The longest sentence in time: MAX_SENTENCE_CHARS at half the usual Mandarin rate (2 characters a second)
# at the slowest SPEED. It bounds a sentence's mel frames, and so the vocoder engine's profile.
SLOWEST_SECONDS_PER_CHAR = 0.5


def duration_scale_range() -> tuple[float, float]:
    """DURATION_SCALE = 1 / SPEED, so its range is SPEED_RANGE's, inverted."""
    return 1.0 / SPEED_RANGE[1], 1.0 / SPEED_RANGE[0]


def max_sentence_frames(sample_rate: int, hop_length: int) -> int:
    """Mel frames of the longest sentence the server admits."""
    seconds = MAX_SENTENCE_CHARS * SLOWEST_SECONDS_PER_CHAR / SPEED_RANGE[0]
    return math.ceil(seconds * sample_rate / hop_length)
