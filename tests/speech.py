"""Real speech for tests and benchmarks: text-to-speech engines of the machine, and the word error rate.

CI installs festival with the HTS voice `cmu_us_slt_arctic_hts`, flite and espeak-ng (`.ci/run`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

# Each engine: its program, and the command that speaks stdin's text into a WAV file.
ENGINES: dict[str, tuple[str, list[str]]] = {
    "festival-hts": ("text2wave", ["text2wave", "-eval", "(voice_cmu_us_slt_arctic_hts)", "-o", "{out}"]),
    "flite": ("flite", ["flite", "-voice", "slt", "-o", "{out}"]),
    "espeak-ng": ("espeak-ng", ["espeak-ng", "--stdin", "-w", "{out}"]),
}


# festival speaks with this voice only when its Debian package is installed beside festival.
HTS_VOICE = Path("/usr/share/festival/voices/us/cmu_us_slt_arctic_hts")


def require_engine(engine: str) -> None:
    """Skip the test when `engine` (or its voice) is not installed; in CI (`CI=true`), fail instead."""
    program = ENGINES[engine][0]
    missing = shutil.which(program) is None or (engine == "festival-hts" and not HTS_VOICE.is_dir())
    if missing:
        reason = f"{engine} is not installed (apt-get install espeak-ng flite festival festvox-us-slt-hts)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def speak(text: str, out: Path, *, engine: str = "festival-hts") -> Path:
    """`text` spoken by `engine` into the WAV file `out`."""
    command = [part.replace("{out}", str(out)) for part in ENGINES[engine][1]]
    if engine == "flite":
        command = [*command[:1], "-t", text, *command[1:]]
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    else:
        subprocess.run(command, input=text.encode(), check=True, capture_output=True, timeout=120)
    return out


def words_of(text: str) -> list[str]:
    """Lower-case words without punctuation, as recognisers give them."""
    return re.findall(r"[a-z0-9']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / words of the reference, on `words_of` both."""
    ref, hyp = words_of(reference), words_of(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, start=1):
        current = [i]
        for j, said in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != said)))
        previous = current
    return previous[-1] / max(1, len(ref))


def srt_text(srt: str) -> str:
    """The text of SubRip cues, without their numbers and timing lines."""
    lines = [line for line in srt.splitlines() if line.strip() and "-->" not in line and not line.strip().isdigit()]
    return " ".join(lines)
