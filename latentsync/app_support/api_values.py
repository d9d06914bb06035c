"""The ``/lipsync`` API's raw values checked with sentences that name the parameter and what it accepts
(:class:`Range`, :class:`Choices`, :class:`Flag`, :class:`Text`, :class:`Speakers`, :func:`check_api_values`);
gradio's own checks do not say which parameter. Part of :mod:`latentsync.app_support`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from latentsync.app_support.settings import MAX_SEED, VERSIONS
from latentsync.errors import InputError
from latentsync.inference.conversation import parse_speakers
from latentsync.inference.timeline import LENGTH_MODES

if TYPE_CHECKING:
    pass


# ------------------------------------------------------------------------------------------ the API's values


def _number(value: float) -> str:
    """1.0 -> "1", 4294967295 -> "4294967295" (not "4.29497e+09"), 0.1 -> "0.1"."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Range:
    """A number from ``minimum`` to ``maximum`` (inclusive); ``whole``: an integer; ``optional``: None passes (the
    endpoint says what to do, e.g. an emptied seed box with "Random seed" ticked is fine)."""

    minimum: float
    maximum: float
    whole: bool = False
    optional: bool = False

    def check(self, name: str, value: Any) -> None:
        if value is None and self.optional:
            return
        kind = "a whole number" if self.whole else "a number"
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not number or not self.minimum <= value <= self.maximum or (self.whole and value != int(value)):
            raise InputError(
                f"The parameter {name} must be {kind} from {_number(self.minimum)} to {_number(self.maximum)}, "
                f"got {value!r}."
            )


@dataclass(frozen=True)
class Choices:
    """One of ``values``."""

    values: tuple[Any, ...]

    def check(self, name: str, value: Any) -> None:
        if isinstance(value, bool) or value not in self.values:
            allowed = ", ".join(repr(v) for v in self.values)
            raise InputError(f"The parameter {name} must be one of {allowed}, got {value!r}.")


@dataclass(frozen=True)
class Flag:
    """true or false."""

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, bool):
            raise InputError(f"The parameter {name} must be true or false, got {value!r}.")


@dataclass(frozen=True)
class Text:
    """A string (or nothing: the default)."""

    def check(self, name: str, value: Any) -> None:
        if value is not None and not isinstance(value, str):
            raise InputError(f"The parameter {name} must be a string, got {value!r}.")


@dataclass(frozen=True)
class Speakers:
    """A conversation's turns: "" (one face), "auto", or a timeline as CSV or JSON text, checked by the pipeline's
    parser (its sentence names the row and the rule). Never a file name: the server reads no path a caller names."""

    def check(self, name: str, value: Any) -> None:
        if value is not None and not isinstance(value, str):
            raise InputError(f"The parameter {name} must be a string: '' (one face), 'auto' or a timeline of turns "
                             f"(CSV or JSON text), got {value!r}.")  # fmt: skip
        if value and value.strip():
            parse_speakers(value)


Rule = Range | Choices | Flag | Text | Speakers  # what api_rules maps a parameter to


def api_rules(steps_range: tuple[int, int], guidance_range: tuple[float, float],
              crf_range: tuple[int, int]) -> dict[str, Rule]:  # fmt: skip
    """What each non-file parameter of ``/lipsync`` accepts, from the page's own widget ranges."""
    return {
        "version": Choices(VERSIONS),
        "steps": Range(*steps_range, whole=True),
        "guidance_scale": Range(*guidance_range),
        "seed": Range(0, MAX_SEED, whole=True, optional=True),
        "randomize_seed": Flag(),
        "score_sync": Flag(),
        "speaker": Text(),
        "length_mode": Choices(LENGTH_MODES),
        "native_fps": Flag(),
        "crf": Range(*crf_range, whole=True),
        "faster": Flag(),
        "seamless_audio_windows": Flag(),
        "restore": Flag(),
        "restore_strength": Range(0.0, 1.0),  # above 0 when restore is on: make_options says so in a sentence
        "speakers": Speakers(),
    }


def check_api_values(names: list[str], values: list[Any], rules: Mapping[str, Rule]) -> None:
    """Check the raw values of a call (as sent, before gradio converts them) against ``rules``.

    Raises :class:`InputError` with a sentence naming the parameter and what it accepts; for too few values, one
    naming the parameters that are missing (gradio's HTTP API needs every value, in order)."""
    if len(values) < len(names):
        missing = ", ".join(names[len(values):])
        raise InputError(
            f"This endpoint takes {len(names)} values in this order: {', '.join(names)}; got {len(values)}, so "
            f"{missing} {'is' if len(names) - len(values) == 1 else 'are'} missing. Send all {len(names)} "
            "(or use gradio_client, which fills in the defaults)."
        )
    for name, value in zip(names, values):
        rule = rules.get(name)
        if rule is not None:
            rule.check(name, value)
