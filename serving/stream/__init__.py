"""Streaming synthesis: a request's audio in chunks as it is made, equal when joined to the `tts` ensemble's.

    engine.py    the scheduler: the decoder steps of every stream of a voice batched, chunks to the vocoder
    sentence.py  one sentence of a stream: decoder frames -> mel frames -> vocoder windows, chunk by chunk
    policy.py    chunk sizes and how far ahead of its listener a stream may run
    vocoder.py   a chunk as a request of the vocoder model
    adapter.py   the Triton glue of model_repository/tts_stream
"""
