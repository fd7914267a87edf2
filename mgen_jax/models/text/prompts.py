"""Movie Gen prompt formatting: the FPS tag, the camera-motion prefix and ByT5's visual text.

Movie Gen conditions on the frame rate and, where a classifier is confident, the camera motion
by writing them into the prompt as text (paper §2.3, §3.2: "FPS-16" is prepended; camera-motion
labels such as zoom-out or pan-left are prefixed to the caption). Our format, applied the same
way to training captions and to sampling prompts:

    format_prompt("A cat.", fps=16, camera_motion="zoom out")
    -> "FPS-16. Camera: zoom out. A cat."

i.e. the FPS tag, then "Camera: <label>", then the prompt, each part ended by ". " (no part is
written when its argument is None). UL2 and MetaCLIP see this whole string.

ByT5 sees only the "visual text", the quoted strings the video should render:

    visual_text('A sign saying "OPEN" next to a “Café” awning') -> "OPEN Café"

Quotes are "..." and “...”, and '...' / ‘...’ only when they clearly quote: the opening mark
starts a word (at the start or after a space or bracket), the closing mark ends one, and no
other single quote opens in between. So apostrophes inside or after a word (don't, dogs' bowls)
never quote, and one before a word ('90s) is ignored unless a closing mark follows it. Outermost
quotes win (nested quotes stay inside the text); an opening mark without its closing mark is
ignored. The strings are stripped and joined with a space, in order.
"""
import numbers
import re

# The paper trains a 16-class camera-motion classifier but does not list its classes (it names
# zoom-out and pan-left as examples). These are the standard cinematography moves, 16 of them.
CAMERA_MOTIONS = (
    "static", "zoom in", "zoom out", "pan left", "pan right", "tilt up", "tilt down",
    "dolly in", "dolly out", "truck left", "truck right", "pedestal up", "pedestal down",
    "orbit left", "orbit right", "handheld",
)

# opening mark -> closing mark, for the marks that always quote.
_DOUBLE = {'"': '"', "\u201c": "\u201d"}
# single marks, which may also be apostrophes: opening -> closing.
_SINGLE = {"'": "'", "\u2018": "\u2019"}
_OPEN_AFTER = re.compile(r"[\s(\[{<:;,—–-]")  # what may precede an opening single mark


def _opens_single(text: str, i: int) -> bool:
    before_ok = i == 0 or _OPEN_AFTER.match(text[i - 1]) is not None
    return before_ok and i + 1 < len(text) and not text[i + 1].isspace()


def _closes_single(text: str, j: int) -> bool:
    after = text[j + 1] if j + 1 < len(text) else ""
    return not text[j - 1].isspace() and not after.isalnum()


def _closing(text: str, i: int) -> int:
    """Index of the mark closing the quote opened at i, or -1."""
    mark = text[i]
    if mark in _DOUBLE:
        return text.find(_DOUBLE[mark], i + 1)
    if mark in _SINGLE and _opens_single(text, i):
        close = _SINGLE[mark]
        for j in range(i + 2, len(text)):
            if text[j] == close and _closes_single(text, j):
                return j
            if text[j] == mark and _opens_single(text, j):
                return -1  # another quote opens first: this mark was an apostrophe ('90s)
    return -1


def quoted_strings(prompt: str) -> list[str]:
    """The non-empty quoted strings of a prompt, outermost first-to-last (rules above)."""
    found, i = [], 0
    while i < len(prompt):
        j = _closing(prompt, i)
        if j == -1:
            i += 1
            continue
        inner = prompt[i + 1:j].strip()
        if inner:
            found.append(inner)
        i = j + 1
    return found


def visual_text(prompt: str) -> str:
    """What ByT5 encodes: the quoted strings joined with a space ("" when there are none)."""
    return " ".join(quoted_strings(prompt))


def camera_motion_label(name: str) -> str:
    """The canonical label of a camera motion; accepts any case and '-'/'_' for spaces
    ("Zoom-Out" -> "zoom out")."""
    label = " ".join(str(name).lower().replace("-", " ").replace("_", " ").split())
    if label not in CAMERA_MOTIONS:
        raise ValueError(f"camera motion {name!r} unknown; choose one of "
                         f"{', '.join(CAMERA_MOTIONS)}")
    return label


def fps_tag(fps) -> str:
    """ "FPS-16" for fps=16 (a positive whole number; 24.0 is accepted as 24)."""
    if (isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not fps > 0
            or not float(fps).is_integer()):  # is_integer() is False for inf and nan
        raise ValueError(f"fps={fps!r}: must be a positive whole number of frames per second")
    return f"FPS-{int(fps)}"


def format_prompt(prompt: str, *, fps=None, camera_motion: str | None = None) -> str:
    """The prompt as Movie Gen's UL2 / MetaCLIP encoders see it (format in the module doc)."""
    parts = []
    if fps is not None:
        parts.append(fps_tag(fps))
    if camera_motion is not None:
        parts.append(f"Camera: {camera_motion_label(camera_motion)}")
    prompt = prompt.strip()
    if prompt:
        parts.append(prompt)
    text = ". ".join(parts)
    return text + "." if parts and not prompt else text
