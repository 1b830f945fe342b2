"""Input errors that name the field at fault."""

from __future__ import annotations

import reprlib


class InputError(ValueError):
    """A request value is wrong; ``field`` is its dotted path in the request."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def as_dict(self) -> dict:
        return {"field": self.field, "message": self.message}


# Requests above these sizes are refused rather than computed: they are far
# beyond any real model or run, and refusing them keeps arithmetic bounded.
MAX_DIMENSION = 10_000_000          # hidden size, FFN size, vocabulary ...
# The deepest published transformer, DeepNet (Wang et al. 2022, arXiv:2203.00555), has 1,000 layers;
# Llama 3.1 405B has 126. Every search evaluates the model a bounded number of times, and each
# evaluation walks its layers: this bound is what keeps a search under a second of CPU for any input.
MAX_LAYERS = 1_024
# Context lengths a config may declare: Llama 4 Scout's max_position_embeddings is 10,485,760.
MAX_POSITIONS = 1 << 26
MAX_TOKENS = 100_000_000            # batch x sequence


def require_int(field: str, value, *, minimum: int = 1, maximum: int = MAX_DIMENSION) -> int:
    """Return ``value`` as an int in [minimum, maximum], or raise naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value == value and value not in (float("inf"), float("-inf")) \
                and value.is_integer():
            value = int(value)
        else:
            raise InputError(field, f"must be an integer, got {show(value)}")
    if value < minimum:
        raise InputError(field, f"must be at least {minimum}, got {value}")
    if value > maximum:
        raise InputError(field, f"must be at most {maximum}, got {value}")
    return value


def require_number(field: str, value, *, minimum: float = 0.0, maximum: float = 1e18) -> float:
    """Return ``value`` as a finite float in [minimum, maximum], or raise naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(field, f"must be a number, got {show(value)}")
    if isinstance(value, int) and abs(value) > 10 ** 300:      # float() would overflow
        raise InputError(field, f"must be between {minimum:g} and {maximum:g}, got an integer of "
                                f"{len(str(abs(value)))} digits")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise InputError(field, f"must be a finite number, got {value}")
    if value < minimum or value > maximum:
        raise InputError(field, f"must be between {minimum:g} and {maximum:g}, got {value:g}")
    return value


def require_choice(field: str, value, choices):
    """Return ``value`` if it is one of ``choices`` (strings, or whole numbers such as a block size),
    or raise listing them."""
    if choices and all(isinstance(c, int) for c in choices):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
            raise InputError(field, f"must be one of {', '.join(str(c) for c in sorted(choices))}; got {show(value)}")
        return value
    if not isinstance(value, str) or value not in choices:
        raise InputError(field, f"must be one of {', '.join(sorted(choices))}; got {show(value)}")
    return value


def require_bool(field: str, value) -> bool:
    if not isinstance(value, bool):
        raise InputError(field, f"must be true or false, got {show(value)}")
    return value


def show(value) -> str:
    """A short, printable form of a bad value for an error message."""
    text = ascii(value[:61]) if isinstance(value, str) else reprlib.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
