"""The work of each Triton model in the `tts` ensemble, as plain numpy code.

frontend -> acoustic -> vocoder -> audio. Every step after the front end carries one row per
sentence, so a long text's sentences share the acoustic and vocoder batches with other requests.
The model.py files under model_repository/ only convert tensors and errors.
"""
