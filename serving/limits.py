"""Serving limits: the one place for request bounds and batch sizes of the Triton model repository."""

MAX_TEXT_CHARS = 2000          # longer texts get a clear error; split them client-side
MAX_SENTENCE_CHARS = 50        # the front end splits longer sentences at clause and word boundaries
MAX_BATCH_SIZE = 64            # rows (sentences) per execute of the acoustic and vocoder steps
SPEED_RANGE = (0.5, 2.0)       # SPEED scales phone durations by 1/SPEED
SENTENCE_PAUSE_S = 0.25        # silence joined between sentences (KAN-TTS uses 0.28 s)
