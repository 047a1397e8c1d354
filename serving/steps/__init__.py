"""The work of each Triton model in the `tts` ensemble, as plain numpy code.

frontend -> acoustic -> vocoder -> audio. Every step after the front end carries one row per
sentence, so a long text's sentences share the acoustic and vocoder batches with other requests.
The model.py files under model_repository/ only convert tensors and errors.
"""


def rows_by_voice(requests: list[dict], voices: int) -> list[tuple[int, list[tuple[int, int]]]]:
    """The (request, row) pairs of every sentence row in a dynamic batch, grouped by their VOICE_INDEX,
    for each voice that has any: each voice's rows then run as one batch of that voice's model."""
    rows = [(r, s) for r, request in enumerate(requests) for s in range(len(request["VOICE_INDEX"]))]
    groups = [(v, [(r, s) for r, s in rows if int(requests[r]["VOICE_INDEX"][s, 0]) == v]) for v in range(voices)]
    return [(voice, group) for voice, group in groups if group]
