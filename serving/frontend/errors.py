"""The one exception class for mistakes in a front-end request."""


class FrontEndError(ValueError):
    """Text, SSML or emotion a user got wrong; the message is one line that says what to do."""
